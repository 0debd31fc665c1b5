/* diffimg.scan._folder: read one folder of a tree in a single call, with the GIL released.

   read_folder(dir_fd, dir_path, asked=()) -> list of (name, st, xattrs, target, error), sorted by name
   (bytes order), "." and ".." left out. dir_fd is the folder, opened and not yet read from;
   dir_path names it too. For each name:
     st      a Stat (st_mode, st_ino, st_dev, st_nlink, st_uid, st_gid, st_size, st_mtime_ns,
             st_ctime_ns, st_rdev), from fstatat(dir_fd, name, AT_SYMLINK_NOFOLLOW);
     xattrs  {name: value} of every xattr, sorted by name, read by dir_path/name without
             following a symlink, and of those named in asked that it has (a filesystem may
             list fewer than it holds: ntfs-3g); None when it has none;
     target  a symlink's target (bytes), else None;
     error   0, or the errno of the first step that failed (st, xattrs and target are then None).
   The listing itself failing raises OSError. This is the pure-Python reader in scanner.py
   (_read_folder) done in C: the scan pays one Python call per folder instead of four per entry.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structseq.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

/* listxattrat and getxattrat (Linux 6.13; one number on every architecture): xattrs read
   relative to the folder's fd, without the kernel walking the whole path of each entry. Older
   kernels answer ENOSYS, a seccomp filter may answer EPERM: then the path is used instead
   (probed once when the module loads, so no thread writes the flag). */
#define NR_GETXATTRAT 464
#define NR_LISTXATTRAT 465
struct xattr_args_at {
    uint64_t value;
    uint32_t size;
    uint32_t flags;
};
static int xattrat_missing;

typedef struct {
    int dir_fd;
    const char *name;   /* in dir_fd */
    const char *path;   /* the same entry by path, for kernels without the *at calls */
} Where;

static void probe_xattrat(void) {
    long n = syscall(NR_LISTXATTRAT, AT_FDCWD, "/", AT_SYMLINK_NOFOLLOW, NULL, 0);
    xattrat_missing = n < 0 && (errno == ENOSYS || errno == EPERM);
}

static ssize_t xlist(const Where *w, char *list, size_t size) {
    if (!xattrat_missing) {
        long n = syscall(NR_LISTXATTRAT, w->dir_fd, w->name, AT_SYMLINK_NOFOLLOW, list, size);
        if (n >= 0 || errno != ENOSYS) return n;
    }
    return llistxattr(w->path, list, size);
}

static ssize_t xget(const Where *w, const char *attr, void *value, size_t size) {
    if (!xattrat_missing) {
        struct xattr_args_at args = {(uint64_t)(uintptr_t)value, (uint32_t)size, 0};
        long n = syscall(NR_GETXATTRAT, w->dir_fd, w->name, AT_SYMLINK_NOFOLLOW, attr, &args,
                         sizeof args);
        if (n >= 0 || errno != ENOSYS) return n;
    }
    return lgetxattr(w->path, attr, value, size);
}

static PyTypeObject *StatType;

static PyStructSequence_Field stat_fields[] = {
    {"st_mode", NULL}, {"st_ino", NULL}, {"st_dev", NULL}, {"st_nlink", NULL},
    {"st_uid", NULL}, {"st_gid", NULL}, {"st_size", NULL}, {"st_mtime_ns", NULL},
    {"st_ctime_ns", NULL}, {"st_rdev", NULL}, {NULL, NULL}};

static PyStructSequence_Desc stat_desc = {
    "diffimg.scan._folder.Stat", "What the scan uses of an lstat result.", stat_fields, 10};

typedef struct {
    char *name;
    size_t name_len;
    struct stat st;
    int error;
    char *xattrs;        /* sorted "name\0" list, then each value: see read_xattrs */
    size_t xattrs_len;   /* bytes of names */
    char **values;
    ssize_t *value_lens;
    size_t n_xattrs;
    char *target;
    ssize_t target_len;
} Item;

static int by_name(const void *a, const void *b) {
    const Item *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c) return c;
    return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static int by_cstr(const void *a, const void *b) {
    /* xattr names hold no NUL: strcmp is the bytes order */
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Buffers for one folder's reading: a name list and a value of the largest size Linux allows
   (XATTR_LIST_MAX, XATTR_SIZE_MAX). Each call asks with the whole buffer: never with size 0,
   whose answer may be stale by the next call (a value that grows meanwhile). */
enum { XATTR_MAX = 65536 };
typedef struct {
    char list[XATTR_MAX];
    char value[XATTR_MAX];
} Scratch;

/* Names asked for by name besides those listed (ntfs-3g lists none of its system.ntfs_*). */
typedef struct {
    char **names;
    size_t n;
} Names;

static const Names no_names = {NULL, 0};

static void free_names(Names *names) {
    for (size_t i = 0; i < names->n; i++) free(names->names[i]);
    free(names->names);
    names->names = NULL;
    names->n = 0;
}

/* names filled from a Python collection of bytes (none holding a NUL), sorted; 0, or -1 with
   the Python error set (what is filled so far is then freed). */
static int names_from(PyObject *collection, Names *names, const char *what) {
    names->names = NULL;
    names->n = 0;
    PyObject *seq = PySequence_Fast(collection, what);
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    names->names = calloc(n ? n : 1, sizeof *names->names);
    if (!names->names) { Py_DECREF(seq); PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < n; i++) {
        char *bytes;
        Py_ssize_t len;
        if (PyBytes_AsStringAndSize(PySequence_Fast_GET_ITEM(seq, i), &bytes, &len) < 0
                || (Py_ssize_t)strlen(bytes) != len) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, what);
            Py_DECREF(seq);
            free_names(names);
            return -1;
        }
        names->names[names->n] = strdup(bytes);
        if (!names->names[names->n]) { Py_DECREF(seq); free_names(names); PyErr_NoMemory(); return -1; }
        names->n++;
    }
    Py_DECREF(seq);
    qsort(names->names, names->n, sizeof *names->names, by_cstr);
    return 0;
}

/* The xattrs of the entry (not followed), names sorted: the listed ones and those asked for
   that it has; 0 or an errno. None: n_xattrs 0. */
static int read_xattrs(const Where *path, Item *it, Scratch *sc, const Names *asked) {
    ssize_t size = xlist(path, sc->list, XATTR_MAX);
    if (size < 0) {
        /* none here (ntfs-3g serving streams as files answers ENODATA for none) */
        if (errno != ENOTSUP && errno != EOPNOTSUPP && errno != ENODATA) return errno;
        size = 0;
    }
    if (size > 0 && sc->list[size - 1] != '\0') return EIO;   /* not a list of names */
    size_t count = 0;
    for (ssize_t i = 0; i < size; i++) if (sc->list[i] == '\0') count++;
    if (count + asked->n == 0) return 0;
    char **order = malloc((count + asked->n) * sizeof *order);
    size_t names_len = size;
    for (size_t a = 0; a < asked->n; a++) names_len += strlen(asked->names[a]) + 1;
    char *sorted = malloc(names_len ? names_len : 1);
    it->values = calloc(count + asked->n, sizeof *it->values);
    it->value_lens = calloc(count + asked->n, sizeof *it->value_lens);
    if (!order || !sorted || !it->values || !it->value_lens) {
        free(order);
        free(sorted);
        return ENOMEM;
    }
    size_t k = 0;
    for (ssize_t i = 0; i < size; i += strlen(sc->list + i) + 1) order[k++] = sc->list + i;
    for (size_t a = 0; a < asked->n; a++) {
        int listed = 0;
        for (size_t j = 0; j < count && !listed; j++) listed = !strcmp(order[j], asked->names[a]);
        if (!listed) order[k++] = asked->names[a];
    }
    qsort(order, k, sizeof *order, by_cstr);
    /* names kept in sorted order, each with its value; one removed meanwhile (or an asked one
       it does not have) is left out */
    size_t at = 0, kept = 0;
    int e = 0;
    for (size_t j = 0; j < k && !e; j++) {
        ssize_t len = xget(path, order[j], sc->value, XATTR_MAX);
        if (len < 0) {
            /* an asked name (not in the list) that it cannot have: ntfs-3g answers EPERM for
               the short name of the root, EMLINK for that of a file with other links */
            int was_asked = order[j] < sc->list || order[j] >= sc->list + size;
            if (errno != ENODATA && errno != ENOTSUP && errno != EOPNOTSUPP
                    && !(was_asked && (errno == EPERM || errno == EMLINK))) e = errno;
            continue;
        }
        char *value = malloc(len ? len : 1);
        if (!value) { e = ENOMEM; break; }
        memcpy(value, sc->value, len);
        size_t n = strlen(order[j]) + 1;
        memcpy(sorted + at, order[j], n);
        at += n;
        it->values[kept] = value;
        it->value_lens[kept] = len;
        kept++;
    }
    free(order);
    it->xattrs = sorted;           /* freed with the item, also after an error */
    it->xattrs_len = at;
    it->n_xattrs = kept;
    return e;
}

static void read_item(int dir_fd, const char *dir_path, size_t dir_len, char *path_buf,
                      Scratch *sc, const Names *asked, Item *it) {
    if (fstatat(dir_fd, it->name, &it->st, AT_SYMLINK_NOFOLLOW) != 0) {
        it->error = errno;
        return;
    }
    if (dir_len + 1 + it->name_len >= PATH_MAX) {
        it->error = ENAMETOOLONG;
        return;
    }
    memcpy(path_buf + dir_len + 1, it->name, it->name_len + 1);
    Where where = {dir_fd, it->name, path_buf};
    int e = read_xattrs(&where, it, sc, asked);
    if (e) { it->error = e; return; }
    if (S_ISLNK(it->st.st_mode)) {
        char *buf = malloc(PATH_MAX + 1);
        if (!buf) { it->error = ENOMEM; return; }
        ssize_t n = readlinkat(dir_fd, it->name, buf, PATH_MAX + 1);
        /* EINVAL: no longer a symlink; the one listed is gone from there (as the Python
           reader says it too) */
        if (n < 0) { it->error = errno == EINVAL ? ENOENT : errno; free(buf); return; }
        it->target = buf;
        it->target_len = n;
    }
}

static void free_items(Item *items, size_t n) {
    for (size_t i = 0; i < n; i++) {
        Item *it = &items[i];
        free(it->name);
        free(it->xattrs);
        for (size_t j = 0; j < it->n_xattrs; j++) free(it->values[j]);
        free(it->values);
        free(it->value_lens);
        free(it->target);
    }
    free(items);
}

/* The names in the folder, read with getdents64 from the caller's fd, freshly opened (no
   opendir: it would stat the folder and set flags again, a syscall each per folder). */
struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static int list_names(int dir_fd, Item **out, size_t *count) {
    enum { BUF = 64 * 1024 };
    char *buf = malloc(BUF);
    size_t n = 0, cap = 16;
    Item *items = calloc(cap, sizeof *items);
    if (!buf || !items) { free(buf); free(items); return ENOMEM; }
    for (;;) {
        long got = syscall(SYS_getdents64, dir_fd, buf, BUF);
        if (got < 0) { int e = errno; free(buf); free_items(items, n); return e; }
        if (got == 0) break;
        for (long at = 0; at < got;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + at);
            at += d->d_reclen;
            const char *nm = d->d_name;
            if (nm[0] == '.' && (nm[1] == '\0' || (nm[1] == '.' && nm[2] == '\0'))) continue;
            if (n == cap) {
                Item *more = realloc(items, 2 * cap * sizeof *items);
                if (!more) { free(buf); free_items(items, n); return ENOMEM; }
                memset(more + cap, 0, cap * sizeof *items);
                items = more;
                cap *= 2;
            }
            items[n].name_len = strlen(nm);
            items[n].name = strdup(nm);
            if (!items[n].name) { free(buf); free_items(items, n); return ENOMEM; }
            n++;
        }
    }
    free(buf);
    if (n < cap) {                    /* a queue of read folders holds many of these */
        Item *fit = realloc(items, (n ? n : 1) * sizeof *items);
        if (fit) items = fit;
    }
    *out = items;
    *count = n;
    return 0;
}

/* A time in integer nanoseconds, exactly as os.stat gives it: past the int64 range too (a
   timestamp of the year 2400 is a valid ext4 time; the scan decides what to do with it). */
static PyObject *ns_object(const struct timespec *t) {
    long long ns;
    if (!__builtin_mul_overflow((long long)t->tv_sec, 1000000000LL, &ns) &&
        !__builtin_add_overflow(ns, (long long)t->tv_nsec, &ns))
        return PyLong_FromLongLong(ns);
    PyObject *sec = PyLong_FromLongLong(t->tv_sec), *giga = PyLong_FromLong(1000000000L);
    PyObject *nsec = PyLong_FromLong(t->tv_nsec);
    PyObject *mul = sec && giga ? PyNumber_Multiply(sec, giga) : NULL;
    PyObject *sum = mul && nsec ? PyNumber_Add(mul, nsec) : NULL;
    Py_XDECREF(sec);
    Py_XDECREF(giga);
    Py_XDECREF(nsec);
    Py_XDECREF(mul);
    return sum;
}

static PyObject *item_object(Item *it) {
    PyObject *name = PyBytes_FromStringAndSize(it->name, it->name_len);
    if (!name) return NULL;
    if (it->error) {
        return Py_BuildValue("(NOOOi)", name, Py_None, Py_None, Py_None, it->error);
    }
    PyObject *st = PyStructSequence_New(StatType);
    if (!st) { Py_DECREF(name); return NULL; }
    const struct stat *s = &it->st;
    PyObject *fields[10] = {
        PyLong_FromUnsignedLong(s->st_mode),
        PyLong_FromUnsignedLongLong(s->st_ino),
        PyLong_FromUnsignedLongLong(s->st_dev),
        PyLong_FromUnsignedLongLong(s->st_nlink),
        PyLong_FromUnsignedLong(s->st_uid),
        PyLong_FromUnsignedLong(s->st_gid),
        PyLong_FromLongLong(s->st_size),
        ns_object(&s->st_mtim),
        ns_object(&s->st_ctim),
        PyLong_FromUnsignedLongLong(s->st_rdev),
    };
    for (int i = 0; i < 10; i++) {
        if (!fields[i]) {
            for (int j = 0; j < 10; j++) Py_XDECREF(fields[j]);
            Py_DECREF(st);
            Py_DECREF(name);
            return NULL;
        }
    }
    for (int i = 0; i < 10; i++) PyStructSequence_SET_ITEM(st, i, fields[i]);
    PyObject *xattrs = Py_None;
    Py_INCREF(Py_None);
    if (it->n_xattrs) {
        Py_DECREF(Py_None);
        xattrs = PyDict_New();
        const char *at = it->xattrs;
        for (size_t j = 0; xattrs && j < it->n_xattrs; j++) {
            size_t n = strlen(at);
            PyObject *k = PyBytes_FromStringAndSize(at, n);
            PyObject *v = PyBytes_FromStringAndSize(it->values[j], it->value_lens[j]);
            if (!k || !v || PyDict_SetItem(xattrs, k, v) < 0) Py_CLEAR(xattrs);
            Py_XDECREF(k);
            Py_XDECREF(v);
            at += n + 1;
        }
        if (!xattrs) { Py_DECREF(st); Py_DECREF(name); return NULL; }
    }
    PyObject *target = Py_None;
    Py_INCREF(Py_None);
    if (it->target) {
        Py_DECREF(Py_None);
        target = PyBytes_FromStringAndSize(it->target, it->target_len);
        if (!target) { Py_DECREF(xattrs); Py_DECREF(st); Py_DECREF(name); return NULL; }
    }
    return Py_BuildValue("(NNNNi)", name, st, xattrs, target, 0);
}

/* The sorted listing of the open folder dir_fd, each name read (GIL not needed); 0 or the
   errno of the listing itself. dir_path names the folder for path-based xattr calls. */
static int read_listing(int dir_fd, const char *dir_path, size_t dir_len, const Names *asked,
                        Item **items, size_t *n) {
    char *path_buf = malloc(PATH_MAX);
    Scratch *sc = malloc(sizeof *sc);
    if (!path_buf || !sc) { free(path_buf); free(sc); return ENOMEM; }
    memcpy(path_buf, dir_path, dir_len);
    path_buf[dir_len] = '/';
    int e = list_names(dir_fd, items, n);
    if (!e) {
        qsort(*items, *n, sizeof **items, by_name);
        for (size_t i = 0; i < *n; i++)
            read_item(dir_fd, dir_path, dir_len, path_buf, sc, asked, &(*items)[i]);
    }
    free(sc);
    free(path_buf);
    return e;
}

/* The listing as Python objects; the items are freed either way. */
static PyObject *listing_object(Item *items, size_t n) {
    PyObject *list = PyList_New(n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *obj = item_object(&items[i]);
        if (!obj) { Py_CLEAR(list); break; }
        PyList_SET_ITEM(list, i, obj);
    }
    free_items(items, n);
    return list;
}

static PyObject *read_folder(PyObject *self, PyObject *args) {
    int dir_fd;
    const char *dir_path;
    Py_ssize_t dir_len;
    PyObject *asked_obj = NULL;
    if (!PyArg_ParseTuple(args, "iy#|O:read_folder", &dir_fd, &dir_path, &dir_len, &asked_obj))
        return NULL;
    if ((size_t)dir_len >= PATH_MAX || strlen(dir_path) != (size_t)dir_len) {
        PyErr_SetString(PyExc_ValueError, "read_folder: bad folder path");
        return NULL;
    }
    Names asked = no_names;
    if (asked_obj && names_from(asked_obj, &asked, "read_folder: asked must be xattr names") < 0)
        return NULL;
    Item *items = NULL;
    size_t n = 0;
    int e;
    Py_BEGIN_ALLOW_THREADS
    e = read_listing(dir_fd, dir_path, dir_len, &asked, &items, &n);
    Py_END_ALLOW_THREADS
    free_names(&asked);
    if (e) {
        errno = e;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return listing_object(items, n);
}

/* ReadAhead(root_fd, root_dev, skip, asked=()): a thread of its own walks the tree below the open folder
   root_fd depth first in canonical order, reading each folder as read_folder does, while the
   caller handles the folders already read: the walk's syscalls and the caller's Python run at
   once, on two cores. It descends into every folder on root_dev whose relative path is not in
   skip (a set of bytes: mount points, kept paths); a caller that leaves out more (exclude
   patterns) passes over the listings it does not want. next() gives (rel, listing, error) in
   that order, None at the end: error is 0, or the errno of opening or listing rel (listing is
   then None). At most QUEUE_ENTRIES names wait in the queue. */

#include <pthread.h>
#include <signal.h>
#include <time.h>

/* The queue waits for the caller past either bound (one folder always passes: a folder of a
   million names is read whole, as the Python reader reads it). */
enum { QUEUE_ENTRIES = 32768, QUEUE_BYTES = 64 << 20 };
/* Folders deeper than this below the nearest kept one have their fd closed, and opened again
   from it name by name when their next subfolder is due: a tree of any depth is walked with a
   bounded number of fds (the rest of the process needs them too). */
enum { KEEP_FDS = 32 };

typedef struct Folder {
    char *rel;
    size_t rel_len;
    Item *items;
    size_t n;
    size_t bytes;       /* what its listing holds in memory */
    int error;
    struct Folder *next;
} Folder;

typedef struct {
    char *rel;          /* the folder's path in the tree ("" for the root) */
    size_t rel_len;
    int fd;             /* -1 once closed (no subfolder left, or too deep): see reopen */
    dev_t dev;
    ino_t ino;
    char **subdirs;     /* the names to descend into, in order */
    size_t n_sub, next_sub;
} Frame;

typedef struct {
    PyObject_HEAD
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    Folder *head, *tail;
    size_t queued;      /* names in the queue */
    size_t queued_bytes;
    int done, stop;
    int root_fd;
    dev_t root_dev;
    Names skip;         /* sorted, for bsearch */
    Names asked;        /* xattrs asked for by name (read_folder's asked) */
} ReadAhead;

static int by_cstr_key(const void *key, const void *item) {
    return strcmp((const char *)key, *(char *const *)item);
}

/* Hand one folder to the caller; 0, or -1 when the caller asked the walk to stop. */
static int put(ReadAhead *w, Folder *f) {
    pthread_mutex_lock(&w->lock);
    while (!w->stop && (w->queued > QUEUE_ENTRIES || w->queued_bytes > QUEUE_BYTES))
        pthread_cond_wait(&w->cond, &w->lock);
    int stopped = w->stop;
    if (!stopped) {
        if (w->tail) w->tail->next = f; else w->head = f;
        w->tail = f;
        w->queued += f->n + 1;
        w->queued_bytes += f->bytes;
        pthread_cond_broadcast(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
    if (stopped) { free_items(f->items, f->n); free(f->rel); free(f); return -1; }
    return 0;
}

static char *join_rel(const char *rel, size_t rel_len, const char *name, size_t *out_len) {
    size_t n = strlen(name);
    size_t len = rel_len ? rel_len + 1 + n : n;
    char *p = malloc(len + 1);
    if (!p) return NULL;
    if (rel_len) { memcpy(p, rel, rel_len); p[rel_len] = '/'; memcpy(p + rel_len + 1, name, n + 1); }
    else memcpy(p, name, n + 1);
    *out_len = len;
    return p;
}

/* Read the open folder fd (at rel; both become the walk's), hand its listing on, and fill
   frame with where to go next (always set: free_frame may follow); -1 when the walk must end
   (stop asked, or no memory for the listing's record). */
static void free_frame(Frame *fr);

static int visit_folder(ReadAhead *w, int fd, char *rel, size_t rel_len, Frame *frame) {
    memset(frame, 0, sizeof *frame);
    frame->fd = -1;
    Folder *f = calloc(1, sizeof *f);
    if (!f) { close(fd); free(rel); return -1; }
    f->rel = rel;
    f->rel_len = rel_len;
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    f->error = read_listing(fd, proc, strlen(proc), &w->asked, &f->items, &f->n);
    struct stat self;
    if (!f->error && fstat(fd, &self) != 0) f->error = errno;
    for (size_t i = 0; !f->error && i < f->n; i++) {
        const Item *it = &f->items[i];
        f->bytes += sizeof *it + it->name_len + 1 + it->xattrs_len + it->target_len;
        for (size_t j = 0; j < it->n_xattrs; j++) f->bytes += it->value_lens[j] + 16;
    }
    if (!f->error) {
        frame->dev = self.st_dev;
        frame->ino = self.st_ino;
        frame->subdirs = malloc((f->n ? f->n : 1) * sizeof *frame->subdirs);
        frame->rel = strdup(rel);
        frame->rel_len = rel_len;
        if (!frame->subdirs || !frame->rel) f->error = ENOMEM;
    }
    for (size_t i = 0; !f->error && i < f->n; i++) {
        Item *it = &f->items[i];
        if (it->error || !S_ISDIR(it->st.st_mode) || it->st.st_dev != w->root_dev) continue;
        if (w->skip.n) {
            size_t len;
            char *child = join_rel(rel, rel_len, it->name, &len);
            if (!child) { f->error = ENOMEM; break; }
            int skipped = bsearch(child, w->skip.names, w->skip.n, sizeof *w->skip.names,
                                  by_cstr_key) != NULL;
            free(child);
            if (skipped) continue;
        }
        char *name = strdup(it->name);
        if (!name) { f->error = ENOMEM; break; }
        frame->subdirs[frame->n_sub++] = name;
    }
    if (f->error) {                   /* the caller gets the errno; nothing below is walked */
        free_items(f->items, f->n);
        f->items = NULL;
        f->n = 0;
        free_frame(frame);
        memset(frame, 0, sizeof *frame);
        frame->fd = -1;
        close(fd);
    } else {
        frame->fd = fd;
    }
    return put(w, f);
}

static void free_frame(Frame *fr) {
    if (fr->fd >= 0) close(fr->fd);
    for (size_t i = fr->next_sub; i < fr->n_sub; i++) free(fr->subdirs[i]);
    free(fr->subdirs);
    free(fr->rel);
}

/* Open stack[i]'s folder again (its fd was closed), name by name from the nearest frame that
   kept its fd, never through a symlink; it must be the very folder listed (ESTALE if not). */
static int reopen(Frame *stack, size_t i) {
    size_t j = i;
    while (stack[j].fd < 0) j--;             /* the root's frame keeps its fd */
    const char *left = stack[i].rel + stack[j].rel_len + (stack[j].rel_len ? 1 : 0);
    int cur = stack[j].fd;
    char name[NAME_MAX + 1];
    while (*left) {
        const char *slash = strchr(left, '/');
        size_t n = slash ? (size_t)(slash - left) : strlen(left);
        if (n > NAME_MAX) { if (cur != stack[j].fd) close(cur); return ENAMETOOLONG; }
        memcpy(name, left, n);
        name[n] = '\0';
        int next = openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        if (cur != stack[j].fd) close(cur);
        if (next < 0) return e;
        cur = next;
        left += n + (slash ? 1 : 0);
    }
    struct stat st;
    if (fstat(cur, &st) != 0 || st.st_dev != stack[i].dev || st.st_ino != stack[i].ino) {
        close(cur);
        return ESTALE;
    }
    stack[i].fd = cur;
    return 0;
}

static void *walk_thread(void *arg) {
    ReadAhead *w = arg;
    sigset_t all;                 /* signals are the caller's: none interrupts a call here */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    size_t depth = 0, cap = 64;
    Frame *stack = malloc(cap * sizeof *stack);
    int fd = stack ? fcntl(w->root_fd, F_DUPFD_CLOEXEC, 0) : -1;
    int fd_error = fd < 0 ? (stack ? errno : ENOMEM) : 0;
    char *root_rel = strdup("");
    if (!stack || fd < 0 || !root_rel) {
        Folder *f = calloc(1, sizeof *f);
        if (f) { f->rel = root_rel ? root_rel : strdup(""); f->error = fd_error ? fd_error : ENOMEM; put(w, f); }
        if (fd >= 0) close(fd);
        free(stack);
        goto done;
    }
    depth = 1;                        /* a frame is always set, and freed below */
    int stopped = visit_folder(w, fd, root_rel, 0, &stack[0]) < 0;
    while (depth && !stopped) {
        Frame *top = &stack[depth - 1];
        if (top->next_sub >= top->n_sub) {
            free_frame(top);
            depth--;
            continue;
        }
        char *name = top->subdirs[top->next_sub++];
        size_t rel_len;
        char *rel = join_rel(top->rel, top->rel_len, name, &rel_len);
        int child = -1, err = ENOMEM;
        if (rel) {
            err = top->fd < 0 ? reopen(stack, depth - 1) : 0;
            if (!err) {
                child = openat(top->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                err = child < 0 ? errno : 0;
            }
        }
        free(name);
        if (top->next_sub >= top->n_sub && top->fd >= 0 && depth > 1) {
            close(top->fd);           /* its last subfolder: it is done with its fd */
            top->fd = -1;
        }
        if (child < 0) {
            Folder *f = calloc(1, sizeof *f);
            if (!f || !rel) { free(f); free(rel); break; }
            f->rel = rel;
            f->rel_len = rel_len;
            f->error = err;
            if (put(w, f) < 0) break;
            continue;
        }
        if (depth == cap) {
            Frame *more = realloc(stack, 2 * cap * sizeof *stack);
            if (!more) { close(child); free(rel); break; }
            stack = more;
            cap *= 2;
        }
        if (depth > KEEP_FDS && stack[depth - KEEP_FDS].fd >= 0) {
            close(stack[depth - KEEP_FDS].fd);       /* opened again when its turn comes */
            stack[depth - KEEP_FDS].fd = -1;
        }
        stopped = visit_folder(w, child, rel, rel_len, &stack[depth]) < 0;
        depth++;                      /* an empty frame is popped next time round */
    }
    while (depth) free_frame(&stack[--depth]);
    free(stack);
done:
    pthread_mutex_lock(&w->lock);
    w->done = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void stop_walk(ReadAhead *w) {
    if (!w->started) return;
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(w->thread, NULL);
    Py_END_ALLOW_THREADS
    w->started = 0;
    while (w->head) {
        Folder *f = w->head;
        w->head = f->next;
        free_items(f->items, f->n);
        free(f->rel);
        free(f);
    }
    w->tail = NULL;
    w->queued = 0;
    w->queued_bytes = 0;
}

static void ReadAhead_dealloc(ReadAhead *w) {
    stop_walk(w);
    free_names(&w->skip);
    free_names(&w->asked);
    if (w->root_fd >= 0) close(w->root_fd);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyObject *ReadAhead_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    int root_fd;
    unsigned long long root_dev;
    PyObject *skip, *asked = NULL;
    if (!PyArg_ParseTuple(args, "iKO|O:ReadAhead", &root_fd, &root_dev, &skip, &asked))
        return NULL;
    ReadAhead *w = (ReadAhead *)type->tp_alloc(type, 0);
    if (!w) return NULL;
    w->root_fd = -1;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->root_dev = (dev_t)root_dev;
    if (names_from(skip, &w->skip, "ReadAhead: skip must be a collection of paths") < 0
            || (asked && names_from(asked, &w->asked, "ReadAhead: asked must be xattr names") < 0)) {
        Py_DECREF(w);
        return NULL;
    }
    w->root_fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
    if (w->root_fd < 0) { PyErr_SetFromErrno(PyExc_OSError); Py_DECREF(w); return NULL; }
    int e = pthread_create(&w->thread, NULL, walk_thread, w);
    if (e) { errno = e; PyErr_SetFromErrno(PyExc_OSError); Py_DECREF(w); return NULL; }
    w->started = 1;
    return (PyObject *)w;
}

/* The next folder, waiting for the walk while letting other threads and signals in. */
static PyObject *ReadAhead_next(ReadAhead *w, PyObject *unused) {
    Folder *f = NULL;
    for (;;) {
        int finished = 0;
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&w->lock);
        if (!w->head && !w->done && w->started) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 50 * 1000 * 1000;          /* look at signals (Ctrl-C) now and then */
            if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&w->cond, &w->lock, &until);
        }
        if (w->head) {
            f = w->head;
            w->head = f->next;
            if (!w->head) w->tail = NULL;
            w->queued -= f->n + 1;
            w->queued_bytes -= f->bytes;
            pthread_cond_broadcast(&w->cond);
        } else if (w->done || !w->started) {
            finished = 1;
        }
        pthread_mutex_unlock(&w->lock);
        Py_END_ALLOW_THREADS
        if (f || finished) break;
        if (PyErr_CheckSignals() < 0) return NULL;
    }
    if (!f) Py_RETURN_NONE;
    PyObject *rel = PyBytes_FromStringAndSize(f->rel, f->rel_len);
    PyObject *listing;
    if (f->error) {
        free_items(f->items, f->n);
        listing = Py_None;
        Py_INCREF(listing);
    } else {
        listing = listing_object(f->items, f->n);
    }
    int error = f->error;
    free(f->rel);
    free(f);
    if (!rel || !listing) { Py_XDECREF(rel); Py_XDECREF(listing); return NULL; }
    return Py_BuildValue("(NNi)", rel, listing, error);
}

static PyObject *ReadAhead_close(ReadAhead *w, PyObject *unused) {
    stop_walk(w);
    Py_RETURN_NONE;
}

static PyMethodDef ReadAhead_methods[] = {
    {"next", (PyCFunction)ReadAhead_next, METH_NOARGS,
     "next() -> (rel, listing, error), the next folder in canonical order; None at the end"},
    {"close", (PyCFunction)ReadAhead_close, METH_NOARGS, "Stop the walk and free what it read."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ReadAheadType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "diffimg.scan._folder.ReadAhead",
    .tp_basicsize = sizeof(ReadAhead),
    .tp_dealloc = (destructor)ReadAhead_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ReadAhead(root_fd, root_dev, skip, asked=()): the tree's folders read by a thread of its own",
    .tp_methods = ReadAhead_methods,
    .tp_new = ReadAhead_new,
};

/* For the tests: read xattrs by path, as on kernels older than 6.13. */
static PyObject *xattrs_by_path(PyObject *self, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    xattrat_missing = on;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"read_folder", read_folder, METH_VARARGS,
     "read_folder(dir_fd, dir_path, asked=()) -> [(name, st, xattrs, target, error)], sorted"},
    {"xattrs_by_path", xattrs_by_path, METH_O,
     "xattrs_by_path(True): read xattrs by path, as on kernels without listxattrat"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "diffimg.scan._folder",
                                    "One folder of a tree read in one call.", -1, methods};

PyMODINIT_FUNC PyInit__folder(void) {
    probe_xattrat();
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    StatType = PyStructSequence_NewType(&stat_desc);
    if (!StatType) { Py_DECREF(m); return NULL; }
    if (PyType_Ready(&ReadAheadType) < 0) { Py_DECREF(m); return NULL; }
    Py_INCREF(&ReadAheadType);
    if (PyModule_AddObject(m, "ReadAhead", (PyObject *)&ReadAheadType) < 0) {
        Py_DECREF(&ReadAheadType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(StatType);
    if (PyModule_AddObject(m, "Stat", (PyObject *)StatType) < 0) {
        Py_DECREF(StatType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
