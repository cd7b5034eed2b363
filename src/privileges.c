/*
 * Privileges: started as root with user or group set, acceptd binds its
 * sockets, then becomes that user and group for good, keeping only
 * CAP_NET_BIND_SERVICE so that a reload can still bind ports below 1024.
 */
#include <sys/types.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acceptd.h"

/* Supplementary groups beyond this are an error. */
#define PRIVILEGES_MAX_GROUPS	65536

static int	 privileges_groups(struct privileges *, char **);
static int	 privileges_set_caps(void);
static int	 privileges_verify(const struct privileges *, char **);

/*
 * Resolve the configured user and group before anything is bound, so an
 * unknown name stops startup at once. Not started as root, nothing can
 * change: *p says so (p->drop 0) and a warning tells when that differs
 * from what was asked. Returns -1 with *cause set.
 */
int
privileges_lookup(const struct config *conf, struct privileges *p,
    char **cause)
{
	struct passwd	*pw = NULL;
	struct group	*gr;

	memset(p, 0, sizeof *p);
	if (conf->user == NULL && conf->group == NULL)
		return (0);

	p->uid = geteuid();
	p->gid = getegid();
	if (conf->user != NULL) {
		errno = 0;
		if ((pw = getpwnam(conf->user)) == NULL) {
			xasprintf(cause, "user '%s': %s", conf->user,
			    errno != 0 ? strerror(errno) : "no such user");
			return (-1);
		}
		p->uid = pw->pw_uid;
		p->gid = pw->pw_gid;
		p->user = xstrdup(conf->user);
	}
	if (conf->group != NULL) {
		errno = 0;
		if ((gr = getgrnam(conf->group)) == NULL) {
			xasprintf(cause, "group '%s': %s", conf->group,
			    errno != 0 ? strerror(errno) : "no such group");
			privileges_free(p);
			return (-1);
		}
		p->gid = gr->gr_gid;
	}

	if (geteuid() != 0) {
		if (p->uid != geteuid() || p->gid != getegid()) {
			log_warnx("not started as root: user and group are "
			    "not changed (running as uid %u, gid %u)",
			    (unsigned int)geteuid(), (unsigned int)getegid());
		}
		privileges_free(p);
		return (0);
	}
	if (privileges_groups(p, cause) == -1) {
		privileges_free(p);
		return (-1);
	}
	p->drop = 1;
	return (0);
}

/*
 * The supplementary groups to run with: the user's groups from the group
 * database (as initgroups sets them, the group included), or the group
 * alone when no user is set.
 */
static int
privileges_groups(struct privileges *p, char **cause)
{
	int	 n = 16, want;

	if (p->user == NULL) {
		p->groups = xcalloc(1, sizeof *p->groups);
		p->groups[0] = p->gid;
		p->ngroups = 1;
		return (0);
	}
	for (;;) {
		p->groups = xreallocarray(p->groups, (size_t)n,
		    sizeof *p->groups);
		want = n;
		if (getgrouplist(p->user, p->gid, p->groups, &want) != -1) {
			p->ngroups = want;
			return (0);
		}
		if (want <= n || want > PRIVILEGES_MAX_GROUPS) {
			xasprintf(cause, "user '%s': cannot list its groups",
			    p->user);
			return (-1);
		}
		n = want;
	}
}

/* Free what privileges_lookup kept. */
void
privileges_free(struct privileges *p)
{
	free(p->user);
	free(p->groups);
	p->user = NULL;
	p->groups = NULL;
	p->ngroups = 0;
	p->drop = 0;
}

/*
 * Become the configured user and group for good: groups, gid, then uid,
 * keeping CAP_NET_BIND_SERVICE alone across the uid change. Then check
 * that it holds, root cannot be regained, and no other capability is
 * left. Returns -1 with *cause set: the caller must not go on.
 */
int
privileges_drop(const struct privileges *p, char **cause)
{
	if (!p->drop)
		return (0);
	if (p->uid != 0 && prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) == -1) {
		xasprintf(cause, "prctl(PR_SET_KEEPCAPS): %s", strerror(errno));
		return (-1);
	}
	if (setgroups((size_t)p->ngroups, p->groups) == -1) {
		xasprintf(cause, "setgroups: %s", strerror(errno));
		return (-1);
	}
	if (setresgid(p->gid, p->gid, p->gid) == -1) {
		xasprintf(cause, "setresgid(%u): %s", (unsigned int)p->gid,
		    strerror(errno));
		return (-1);
	}
	if (p->user != NULL && setresuid(p->uid, p->uid, p->uid) == -1) {
		xasprintf(cause, "setresuid(%u): %s", (unsigned int)p->uid,
		    strerror(errno));
		return (-1);
	}
	if (p->uid != 0) {
		if (privileges_set_caps() == -1) {
			xasprintf(cause, "capset(CAP_NET_BIND_SERVICE): %s",
			    strerror(errno));
			return (-1);
		}
		if (prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L) == -1) {
			xasprintf(cause, "prctl(PR_SET_KEEPCAPS): %s",
			    strerror(errno));
			return (-1);
		}
	}
	return (privileges_verify(p, cause));
}

/*
 * Keep CAP_NET_BIND_SERVICE, permitted and effective, and nothing else
 * (a setuid away from root with PR_SET_KEEPCAPS keeps the permitted set
 * whole and clears the effective one).
 */
static int
privileges_set_caps(void)
{
	struct __user_cap_header_struct	 hdr;
	struct __user_cap_data_struct	 data[2];

	memset(&hdr, 0, sizeof hdr);
	memset(data, 0, sizeof data);
	hdr.version = _LINUX_CAPABILITY_VERSION_3;
	hdr.pid = 0;
	data[CAP_TO_INDEX(CAP_NET_BIND_SERVICE)].permitted =
	    CAP_TO_MASK(CAP_NET_BIND_SERVICE);
	data[CAP_TO_INDEX(CAP_NET_BIND_SERVICE)].effective =
	    CAP_TO_MASK(CAP_NET_BIND_SERVICE);
	return ((int)syscall(SYS_capset, &hdr, data));
}

/* Check the result of a drop: ids, groups, no way back, capabilities. */
static int
privileges_verify(const struct privileges *p, char **cause)
{
	struct __user_cap_header_struct	 hdr;
	struct __user_cap_data_struct	 data[2];
	uid_t				 ru, eu, su;
	gid_t				 rg, eg, sg, *have;
	int				 i, j, n;
	uint32_t			 want;

	if (getresuid(&ru, &eu, &su) == -1 || getresgid(&rg, &eg, &sg) == -1 ||
	    (p->user != NULL && (ru != p->uid || eu != p->uid ||
	    su != p->uid)) || rg != p->gid || eg != p->gid || sg != p->gid) {
		xasprintf(cause, "user and group did not change as asked");
		return (-1);
	}

	if ((n = getgroups(0, NULL)) == -1 || n != p->ngroups) {
		xasprintf(cause, "supplementary groups did not change as asked");
		return (-1);
	}
	have = xcalloc((size_t)n + 1, sizeof *have);
	if (getgroups(n, have) != n) {
		free(have);
		xasprintf(cause, "supplementary groups cannot be read");
		return (-1);
	}
	for (i = 0; i < n; i++) {
		for (j = 0; j < p->ngroups && have[i] != p->groups[j]; j++)
			/* nothing */;
		if (j == p->ngroups) {
			xasprintf(cause, "supplementary group %u is still "
			    "there", (unsigned int)have[i]);
			free(have);
			return (-1);
		}
	}
	free(have);

	if (p->uid == 0)
		return (0);
	if (setuid(0) != -1 || seteuid(0) != -1) {
		xasprintf(cause, "root could be regained after the drop");
		return (-1);
	}
	memset(&hdr, 0, sizeof hdr);
	memset(data, 0, sizeof data);
	hdr.version = _LINUX_CAPABILITY_VERSION_3;
	if (syscall(SYS_capget, &hdr, data) == -1) {
		xasprintf(cause, "capget: %s", strerror(errno));
		return (-1);
	}
	for (i = 0; i < 2; i++) {
		want = i == CAP_TO_INDEX(CAP_NET_BIND_SERVICE) ?
		    CAP_TO_MASK(CAP_NET_BIND_SERVICE) : 0;
		if (data[i].effective != want || data[i].permitted != want ||
		    data[i].inheritable != 0) {
			xasprintf(cause, "capabilities other than "
			    "CAP_NET_BIND_SERVICE are left");
			return (-1);
		}
	}
	return (0);
}
