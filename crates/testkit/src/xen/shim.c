/*
 * xsio-testkit's Xen shim: an LD_PRELOAD library that lets Xen's own xenstored
 * (C and OCaml) and QEMU's Xen PV backend run on a machine without a hypervisor.
 *
 * Only the calls that would reach the hypervisor are replaced; the programs' own
 * logic (store, permissions, watches, transactions, quotas, the xenbus handshake,
 * the block backend) runs unmodified. Everything lives under one work directory
 * named by env XSIO_XEN_DIR (the Rust side, `xsio_testkit::xen::World`, lays it out):
 *
 *   grants-<domid>        guest memory of domain <domid>: grant reference R (and
 *                         foreign frame R) is page R of this file
 *   evtchn-<domid>-<port> FIFO: the guest's side of event channel <port> kicks the
 *                         backend by writing 4 bytes (content ignored)
 *   notify-<domid>-<port> FIFO: the backend's notify on that channel writes 4 bytes
 *   virq-dom-exc          FIFO: VIRQ_DOM_EXC (a domain died: see dead-<domid>)
 *   dead-<domid>          exists when domain <domid> is dying
 *   xsd_kva, xsd_port     stand-ins for /proc/xen/xsd_kva and /proc/xen/xsd_port
 *   run/                  stand-in for /var/run/xenstored (oxenstored hard-codes it)
 *   notify-log            one line "<domid> <port>" per notify (for tests to read)
 *
 * An event channel handle is an epoll set over the kick FIFOs of its bindings,
 * so the programs can poll its fd as they would poll /dev/xen/evtchn.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#define PAGE 4096
#define FIRST_RESERVED_DOMID 0x7ff0u
#define MAX_BINDINGS 1024
#define VIRQ_PORT 4095

static const char *work_dir(void)
{
	const char *dir = getenv("XSIO_XEN_DIR");
	return dir ? dir : "/tmp";
}

/* Writes "<work dir>/<name>" into buf. */
static void in_dir(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", work_dir(), name);
}

static void trace(const char *fmt, ...)
{
	if (!getenv("XSIO_XEN_TRACE"))
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "xsio-xen-shim[%d]: ", (int)getpid());
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

/* ---------------------------------------------------------------- handles */

/* Every handle type of the Xen libraries is opaque to its users: one dummy
 * object serves xc_interface, xenforeignmemory and xendevicemodel. */
static int dummy_handle;

void *xc_interface_open(void *logger, void *dombuild_logger, unsigned flags)
{
	(void)logger; (void)dombuild_logger; (void)flags;
	trace("xc_interface_open");
	return &dummy_handle;
}

int xc_interface_close(void *xch) { (void)xch; return 0; }

void *xenforeignmemory_open(void *logger, unsigned flags)
{
	(void)logger; (void)flags;
	return &dummy_handle;
}

int xenforeignmemory_close(void *fmem) { (void)fmem; return 0; }

void *xendevicemodel_open(void *logger, unsigned flags)
{
	(void)logger; (void)flags;
	return &dummy_handle;
}

int xendevicemodel_close(void *dmod) { (void)dmod; return 0; }

int xentoolcore_restrict_all(uint16_t domid) { (void)domid; return 0; }

/* ---------------------------------------------------------------- domains */

static int domain_dying(uint32_t domid)
{
	char path[4096], name[64];
	snprintf(name, sizeof(name), "dead-%u", domid);
	in_dir(path, sizeof(path), name);
	return access(path, F_OK) == 0;
}

/* One domain's 112-byte info record, as Xen 4.17's two layouts on x86-64 (little
 * endian) put it: zeroed, the domid's low `domid_len` bytes at 0, and a flag word whose
 * bit 0 is `dying` at `flags_at`. Every domain below the reserved ids exists; a dying one
 * has its dying bit set. Returns the records written (0 or 1). */
static int domain_info(uint32_t first, unsigned max, void *info, size_t domid_len,
		       size_t flags_at)
{
	if (max == 0 || first >= FIRST_RESERVED_DOMID)
		return 0;
	unsigned char *out = info;
	memset(out, 0, 112);
	memcpy(out, &first, domid_len);
	uint32_t bits = domain_dying(first) ? 1u : 0u;
	memcpy(out + flags_at, &bits, 4);
	return 1;
}

/* xc_dominfo_t: domid (u32) at 0, the flag bits (dying:1, crashed:1, shutdown:1, ...) in
 * the word at offset 8. */
int xc_domain_getinfo(void *xch, uint32_t first, unsigned max, void *info)
{
	(void)xch;
	return domain_info(first, max, info, 4, 8);
}

/* xc_domaininfo_t (the domctl's getdomaininfo): domain (u16) at 0, flags (u32) at 4,
 * bit 0 dying. */
int xc_domain_getinfolist(void *xch, uint32_t first, unsigned max, void *info)
{
	(void)xch;
	return domain_info(first, max, info, 2, 4);
}

/* ---------------------------------------------------------------- memory */

static int open_grants(uint32_t domid, int prot)
{
	char path[4096], name[64];
	snprintf(name, sizeof(name), "grants-%u", domid);
	in_dir(path, sizeof(path), name);
	return open(path, (prot & PROT_WRITE) ? O_RDWR : O_RDONLY);
}

/* Maps `count` pages of domain `domid` (page numbers in refs) contiguously. */
static void *map_pages(uint32_t count, uint32_t domid, const uint32_t *refs, int prot)
{
	if (count == 0) {
		errno = EINVAL;
		return NULL;
	}
	int fd = open_grants(domid, prot);
	if (fd < 0) {
		trace("map domain %u: no grants file: %s", domid, strerror(errno));
		return NULL;
	}
	char *base = mmap(NULL, (size_t)count * PAGE, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		close(fd);
		return NULL;
	}
	for (uint32_t i = 0; i < count; i++) {
		void *page = mmap(base + (size_t)i * PAGE, PAGE, prot,
				  MAP_SHARED | MAP_FIXED, fd, (off_t)refs[i] * PAGE);
		if (page == MAP_FAILED) {
			int saved = errno;
			munmap(base, (size_t)count * PAGE);
			close(fd);
			errno = saved;
			return NULL;
		}
	}
	close(fd);
	trace("mapped %u page(s) of domain %u, first %u", count, domid, refs[0]);
	return base;
}

void *xc_map_foreign_range(void *xch, uint32_t dom, int size, int prot, unsigned long mfn)
{
	(void)xch;
	uint32_t count = (uint32_t)((size + PAGE - 1) / PAGE);
	uint32_t refs[16];
	if (count == 0 || count > 16) {
		errno = EINVAL;
		return NULL;
	}
	for (uint32_t i = 0; i < count; i++)
		refs[i] = (uint32_t)mfn + i;
	return map_pages(count, dom, refs, prot);
}

void *xenforeignmemory_map(void *fmem, uint32_t dom, int prot, size_t num,
			   const unsigned long *arr, int *err)
{
	(void)fmem; (void)dom; (void)prot; (void)arr;
	for (size_t i = 0; err && i < num; i++)
		err[i] = -ENOSYS;
	errno = ENOSYS;
	return NULL;
}

void *xengnttab_open(void *logger, unsigned flags)
{
	(void)logger; (void)flags;
	return &dummy_handle;
}

int xengnttab_close(void *xgt) { (void)xgt; return 0; }

int xengnttab_set_max_grants(void *xgt, uint32_t n) { (void)xgt; (void)n; return 0; }

void *xengnttab_map_grant_ref(void *xgt, uint32_t domid, uint32_t ref, int prot)
{
	(void)xgt;
	return map_pages(1, domid, &ref, prot);
}

void *xengnttab_map_domain_grant_refs(void *xgt, uint32_t count, uint32_t domid,
				      uint32_t *refs, int prot)
{
	(void)xgt;
	return map_pages(count, domid, refs, prot);
}

void *xengnttab_map_grant_refs(void *xgt, uint32_t count, uint32_t *domids,
			       uint32_t *refs, int prot)
{
	(void)xgt;
	for (uint32_t i = 1; i < count; i++) {
		if (domids[i] != domids[0]) {
			errno = EINVAL;
			return NULL;
		}
	}
	return map_pages(count, count ? domids[0] : 0, refs, prot);
}

int xengnttab_unmap(void *xgt, void *start, uint32_t count)
{
	(void)xgt;
	return munmap(start, (size_t)count * PAGE);
}

/* xengnttab_grant_copy_segment_t: source and dest are 8-byte unions (a pointer,
 * or {u32 ref, u16 offset, u16 domid}); then u16 len, u16 flags, i16 status. */
struct copy_segment {
	union { void *virt; struct { uint32_t ref; uint16_t offset; uint16_t domid; } foreign; } source, dest;
	uint16_t len;
	uint16_t flags;
	int16_t status;
};
#define COPY_SOURCE_GREF 1
#define COPY_DEST_GREF 2

int xengnttab_grant_copy(void *xgt, uint32_t count, void *segments)
{
	(void)xgt;
	struct copy_segment *segs = segments;
	for (uint32_t i = 0; i < count; i++) {
		struct copy_segment *s = &segs[i];
		int to_guest = (s->flags & COPY_DEST_GREF) != 0;
		uint32_t domid = to_guest ? s->dest.foreign.domid : s->source.foreign.domid;
		uint32_t ref = to_guest ? s->dest.foreign.ref : s->source.foreign.ref;
		uint32_t offset = to_guest ? s->dest.foreign.offset : s->source.foreign.offset;
		int fd = open_grants(domid, to_guest ? PROT_WRITE : PROT_READ);
		ssize_t done = -1;
		if (fd >= 0 && offset + s->len <= PAGE) {
			off_t at = (off_t)ref * PAGE + offset;
			done = to_guest ? pwrite(fd, s->source.virt, s->len, at)
					: pread(fd, s->dest.virt, s->len, at);
		}
		if (fd >= 0)
			close(fd);
		s->status = done == (ssize_t)s->len ? 0 : -1; /* GNTST_okay or general error */
	}
	return 0;
}

/* ---------------------------------------------------------------- event channels */

struct evtchn_handle {
	int epfd;
};

struct binding {
	int used;
	struct evtchn_handle *owner;
	int local_port;
	uint32_t domid;
	uint32_t remote_port;
	int kick_fd;   /* read by us */
	int notify_fd; /* written by us */
};

static pthread_mutex_t bindings_lock = PTHREAD_MUTEX_INITIALIZER;
static struct binding bindings[MAX_BINDINGS];
static int next_port = 1;

static int open_fifo(const char *name)
{
	char path[4096];
	in_dir(path, sizeof(path), name);
	if (mkfifo(path, 0600) < 0 && errno != EEXIST)
		return -1;
	/* Read-write, so that opening never blocks and reads never see EOF. */
	return open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
}

void *xenevtchn_open(void *logger, unsigned flags)
{
	(void)logger; (void)flags;
	struct evtchn_handle *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (h->epfd < 0) {
		free(h);
		return NULL;
	}
	trace("xenevtchn_open fd %d", h->epfd);
	return h;
}

void *xenevtchn_fdopen(void *logger, int fd, unsigned flags)
{
	(void)fd;
	return xenevtchn_open(logger, flags);
}

static void drop_binding(struct binding *b)
{
	epoll_ctl(b->owner->epfd, EPOLL_CTL_DEL, b->kick_fd, NULL);
	close(b->kick_fd);
	if (b->notify_fd >= 0)
		close(b->notify_fd);
	memset(b, 0, sizeof(*b));
}

int xenevtchn_close(void *handle)
{
	struct evtchn_handle *h = handle;
	if (!h)
		return 0;
	pthread_mutex_lock(&bindings_lock);
	for (int i = 0; i < MAX_BINDINGS; i++)
		if (bindings[i].used && bindings[i].owner == h)
			drop_binding(&bindings[i]);
	pthread_mutex_unlock(&bindings_lock);
	close(h->epfd);
	free(h);
	return 0;
}

int xenevtchn_fd(void *handle)
{
	return ((struct evtchn_handle *)handle)->epfd;
}

static int add_binding(struct evtchn_handle *h, uint32_t domid, uint32_t remote,
		       const char *kick, const char *notify, int port)
{
	int kick_fd = open_fifo(kick);
	if (kick_fd < 0)
		return -1;
	int notify_fd = notify ? open_fifo(notify) : -1;
	pthread_mutex_lock(&bindings_lock);
	struct binding *b = NULL;
	for (int i = 0; i < MAX_BINDINGS && !b; i++)
		if (!bindings[i].used)
			b = &bindings[i];
	if (!b) {
		pthread_mutex_unlock(&bindings_lock);
		close(kick_fd);
		if (notify_fd >= 0)
			close(notify_fd);
		errno = ENOSPC;
		return -1;
	}
	if (port < 0)
		port = next_port++;
	*b = (struct binding){ 1, h, port, domid, remote, kick_fd, notify_fd };
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)port };
	epoll_ctl(h->epfd, EPOLL_CTL_ADD, kick_fd, &ev);
	pthread_mutex_unlock(&bindings_lock);
	trace("bound domain %u port %u as local port %d", domid, remote, port);
	return port;
}

int xenevtchn_bind_interdomain(void *handle, uint32_t domid, uint32_t remote_port)
{
	char kick[64], notify[64];
	snprintf(kick, sizeof(kick), "evtchn-%u-%u", domid, remote_port);
	snprintf(notify, sizeof(notify), "notify-%u-%u", domid, remote_port);
	return add_binding(handle, domid, remote_port, kick, notify, -1);
}

int xenevtchn_bind_virq(void *handle, unsigned virq)
{
	(void)virq; /* only VIRQ_DOM_EXC is ever bound by these programs */
	return add_binding(handle, 0x7ff0, 0, "virq-dom-exc", NULL, VIRQ_PORT);
}

int xenevtchn_bind_unbound_port(void *handle, uint32_t domid)
{
	(void)handle; (void)domid;
	errno = ENOSYS;
	return -1;
}

static struct binding *find_port(struct evtchn_handle *h, int port)
{
	for (int i = 0; i < MAX_BINDINGS; i++)
		if (bindings[i].used && bindings[i].local_port == port &&
		    (!h || bindings[i].owner == h))
			return &bindings[i];
	return NULL;
}

int xenevtchn_unbind(void *handle, uint32_t port)
{
	pthread_mutex_lock(&bindings_lock);
	struct binding *b = find_port(handle, (int)port);
	if (b)
		drop_binding(b);
	pthread_mutex_unlock(&bindings_lock);
	return 0;
}

int xenevtchn_notify(void *handle, uint32_t port)
{
	(void)handle;
	pthread_mutex_lock(&bindings_lock);
	struct binding *b = find_port(NULL, (int)port);
	if (b && b->notify_fd >= 0) {
		uint32_t word = port;
		ssize_t n = write(b->notify_fd, &word, 4); /* a full FIFO already says "look" */
		(void)n;
		if (getenv("XSIO_XEN_NOTIFY_LOG")) {
			char path[4096];
			in_dir(path, sizeof(path), "notify-log");
			FILE *f = fopen(path, "a");
			if (f) {
				fprintf(f, "%u %u\n", b->domid, b->remote_port);
				fclose(f);
			}
		}
	}
	pthread_mutex_unlock(&bindings_lock);
	return 0;
}

int xenevtchn_pending(void *handle)
{
	struct evtchn_handle *h = handle;
	struct epoll_event ev;
	int n = epoll_wait(h->epfd, &ev, 1, 0);
	if (n <= 0) {
		if (n == 0)
			errno = EAGAIN;
		return -1;
	}
	int port = (int)ev.data.u32;
	pthread_mutex_lock(&bindings_lock);
	struct binding *b = find_port(h, port);
	if (b) {
		char sink[256]; /* several kicks collapse into one event, as in Xen */
		while (read(b->kick_fd, sink, sizeof(sink)) > 0)
			;
	}
	pthread_mutex_unlock(&bindings_lock);
	return port;
}

int xenevtchn_unmask(void *handle, uint32_t port) { (void)handle; (void)port; return 0; }

/* ---------------------------------------------------------------- libc */

/* Rewrites /proc/xen/xsd_* and /var/run/xenstored/... into the work directory;
 * returns path itself when it is not one of those. */
static const char *redirect(const char *path, char *buf, size_t len)
{
	static const char run1[] = "/var/run/xenstored";
	static const char run2[] = "/run/xenstored";
	if (!path)
		return path;
	if (strcmp(path, "/proc/xen/xsd_kva") == 0) {
		in_dir(buf, len, "xsd_kva");
		return buf;
	}
	if (strcmp(path, "/proc/xen/xsd_port") == 0) {
		in_dir(buf, len, "xsd_port");
		return buf;
	}
	const char *rest = NULL;
	if (strncmp(path, run1, sizeof(run1) - 1) == 0)
		rest = path + sizeof(run1) - 1;
	else if (strncmp(path, run2, sizeof(run2) - 1) == 0)
		rest = path + sizeof(run2) - 1;
	if (rest && (*rest == '\0' || *rest == '/')) {
		snprintf(buf, len, "%s/run%s", work_dir(), rest);
		trace("redirect %s -> %s", path, buf);
		return buf;
	}
	return path;
}

typedef int (*open_fn)(const char *, int, ...);
typedef int (*path_fn)(const char *);
typedef int (*mkdir_fn)(const char *, mode_t);
typedef int (*rename_fn)(const char *, const char *);
typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);
typedef int (*setrlimit_fn)(__rlimit_resource_t, const struct rlimit *);

/* The libc function this one wraps, looked up once. */
#define REAL(name, type) \
	static type real_##name; \
	if (!real_##name) real_##name = (type)dlsym(RTLD_NEXT, #name)

/* The optional mode argument of an open(2) (0 unless the flags create a file), read in
 * the variadic function itself, as va_start requires. */
#define OPEN_MODE(mode, flags) \
	mode_t mode = 0; \
	if ((flags) & (O_CREAT | O_TMPFILE)) { \
		va_list ap; \
		va_start(ap, flags); \
		mode = (mode_t)va_arg(ap, int); \
		va_end(ap); \
	}

int open(const char *path, int flags, ...)
{
	REAL(open, open_fn);
	OPEN_MODE(mode, flags);
	char buf[4096];
	return real_open(redirect(path, buf, sizeof(buf)), flags, mode);
}

int open64(const char *path, int flags, ...)
{
	REAL(open64, open_fn);
	OPEN_MODE(mode, flags);
	char buf[4096];
	return real_open64(redirect(path, buf, sizeof(buf)), flags, mode);
}

int unlink(const char *path)
{
	REAL(unlink, path_fn);
	char buf[4096];
	return real_unlink(redirect(path, buf, sizeof(buf)));
}

int mkdir(const char *path, mode_t mode)
{
	REAL(mkdir, mkdir_fn);
	char buf[4096];
	return real_mkdir(redirect(path, buf, sizeof(buf)), mode);
}

int rename(const char *from, const char *to)
{
	REAL(rename, rename_fn);
	char buf1[4096], buf2[4096];
	return real_rename(redirect(from, buf1, sizeof(buf1)), redirect(to, buf2, sizeof(buf2)));
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	REAL(bind, bind_fn);
	if (addr && addr->sa_family == AF_UNIX) {
		const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
		char buf[4096];
		const char *to = redirect(un->sun_path, buf, sizeof(buf));
		if (to != un->sun_path) {
			struct sockaddr_un moved = { .sun_family = AF_UNIX };
			if (strlen(to) >= sizeof(moved.sun_path)) {
				errno = ENAMETOOLONG;
				return -1;
			}
			strcpy(moved.sun_path, to);
			return real_bind(fd, (const struct sockaddr *)&moved, sizeof(moved));
		}
	}
	return real_bind(fd, addr, len);
}

/* Daemons raise their descriptor limit past what an unprivileged test may
 * have; clamp the request to the current hard limit instead of failing. */
int setrlimit(__rlimit_resource_t resource, const struct rlimit *limit)
{
	REAL(setrlimit, setrlimit_fn);
	struct rlimit now, want = *limit;
	if (getrlimit(resource, &now) == 0 && now.rlim_max != RLIM_INFINITY) {
		if (want.rlim_max == RLIM_INFINITY || want.rlim_max > now.rlim_max)
			want.rlim_max = now.rlim_max;
		if (want.rlim_cur == RLIM_INFINITY || want.rlim_cur > want.rlim_max)
			want.rlim_cur = want.rlim_max;
	}
	return real_setrlimit(resource, &want);
}
