/* diffimg._folder: read one folder of a tree in a single call, with the GIL released.

   read_folder(dir_fd, dir_path) -> list of (name, st, xattrs, target, error), sorted by name
   (bytes order), "." and ".." left out. dir_fd is the folder, opened and not yet read from;
   dir_path names it too. For each name:
     st      a Stat (st_mode, st_ino, st_dev, st_nlink, st_uid, st_gid, st_size, st_mtime_ns,
             st_ctime_ns, st_rdev), from fstatat(dir_fd, name, AT_SYMLINK_NOFOLLOW);
     xattrs  {name: value} of every xattr, sorted by name, read by dir_path/name without
             following a symlink; None when it has none or the filesystem has none;
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
   kernels answer ENOSYS and the path is used instead. */
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

static ssize_t xlist(const Where *w, char *list, size_t size) {
    if (!xattrat_missing) {
        long n = syscall(NR_LISTXATTRAT, w->dir_fd, w->name, AT_SYMLINK_NOFOLLOW, list, size);
        if (n >= 0 || errno != ENOSYS) return n;
        xattrat_missing = 1;
    }
    return llistxattr(w->path, list, size);
}

static ssize_t xget(const Where *w, const char *attr, void *value, size_t size) {
    if (!xattrat_missing) {
        struct xattr_args_at args = {(uint64_t)(uintptr_t)value, (uint32_t)size, 0};
        long n = syscall(NR_GETXATTRAT, w->dir_fd, w->name, AT_SYMLINK_NOFOLLOW, attr, &args,
                         sizeof args);
        if (n >= 0 || errno != ENOSYS) return n;
        xattrat_missing = 1;
    }
    return lgetxattr(w->path, attr, value, size);
}

static PyTypeObject *StatType;

static PyStructSequence_Field stat_fields[] = {
    {"st_mode", NULL}, {"st_ino", NULL}, {"st_dev", NULL}, {"st_nlink", NULL},
    {"st_uid", NULL}, {"st_gid", NULL}, {"st_size", NULL}, {"st_mtime_ns", NULL},
    {"st_ctime_ns", NULL}, {"st_rdev", NULL}, {NULL, NULL}};

static PyStructSequence_Desc stat_desc = {
    "diffimg._folder.Stat", "What the scan uses of an lstat result.", stat_fields, 10};

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

/* The xattrs of the entry (not followed), names sorted; 0 or an errno. None: n_xattrs 0. */
static int read_xattrs(const Where *path, Item *it) {
    ssize_t size = 0;
    char *names = NULL;
    for (;;) {
        size = xlist(path, NULL, 0);
        if (size < 0) {
            if (errno == ENOTSUP || errno == EOPNOTSUPP) return 0;
            return errno;
        }
        if (size == 0) return 0;
        free(names);
        names = malloc(size);
        if (!names) return ENOMEM;
        ssize_t got = xlist(path, names, size);
        if (got >= 0) { size = got; break; }
        if (errno != ERANGE) { int e = errno; free(names); return e; }
        /* grew between the two calls: ask again */
    }
    size_t count = 0;
    for (ssize_t i = 0; i < size; i++) if (names[i] == '\0') count++;
    if (count == 0) { free(names); return 0; }
    char **order = malloc(count * sizeof *order);
    it->values = calloc(count, sizeof *it->values);
    it->value_lens = calloc(count, sizeof *it->value_lens);
    if (!order || !it->values || !it->value_lens) { free(order); free(names); return ENOMEM; }
    size_t k = 0;
    for (ssize_t i = 0; i < size; i += strlen(names + i) + 1) order[k++] = names + i;
    qsort(order, count, sizeof *order, by_cstr);
    /* names kept in sorted order, each with its value; one removed meanwhile is left out */
    char *sorted = malloc(size);
    if (!sorted) { free(order); free(names); return ENOMEM; }
    size_t at = 0, kept = 0;
    for (size_t j = 0; j < count; j++) {
        char *value = NULL;
        ssize_t len;
        for (;;) {
            len = xget(path, order[j], NULL, 0);
            if (len < 0) break;
            free(value);
            value = malloc(len ? len : 1);
            if (!value) { free(order); free(names); free(sorted); return ENOMEM; }
            ssize_t got = xget(path, order[j], value, len);
            if (got >= 0) { len = got; break; }
            if (errno != ERANGE) { len = -1; break; }
        }
        if (len < 0) {
            int e = errno;
            free(value);
            if (e == ENODATA) continue;     /* removed between list and get: simply gone */
            free(order); free(names); free(sorted);
            it->n_xattrs = kept;
            it->xattrs = NULL;
            return e;
        }
        size_t n = strlen(order[j]) + 1;
        memcpy(sorted + at, order[j], n);
        at += n;
        it->values[kept] = value;
        it->value_lens[kept] = len;
        kept++;
    }
    free(order);
    free(names);
    it->xattrs = sorted;
    it->xattrs_len = at;
    it->n_xattrs = kept;
    return 0;
}

static void read_item(int dir_fd, const char *dir_path, size_t dir_len, char *path_buf,
                      Item *it) {
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
    int e = read_xattrs(&where, it);
    if (e) { it->error = e; return; }
    if (S_ISLNK(it->st.st_mode)) {
        char *buf = malloc(PATH_MAX + 1);
        if (!buf) { it->error = ENOMEM; return; }
        ssize_t n = readlinkat(dir_fd, it->name, buf, PATH_MAX + 1);
        if (n < 0) { it->error = errno; free(buf); return; }
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
    size_t n = 0, cap = 64;
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
    *out = items;
    *count = n;
    return 0;
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
        PyLong_FromLongLong((long long)s->st_mtim.tv_sec * 1000000000LL + s->st_mtim.tv_nsec),
        PyLong_FromLongLong((long long)s->st_ctim.tv_sec * 1000000000LL + s->st_ctim.tv_nsec),
        PyLong_FromUnsignedLongLong(s->st_rdev),
    };
    for (int i = 0; i < 10; i++) {
        if (!fields[i]) {
            for (int j = 0; j < 10; j++) Py_XDECREF(fields[j]);
            Py_DECREF(st);
            Py_DECREF(name);
            return NULL;
        }
        PyStructSequence_SET_ITEM(st, i, fields[i]);
    }
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

static PyObject *read_folder(PyObject *self, PyObject *args) {
    int dir_fd;
    const char *dir_path;
    Py_ssize_t dir_len;
    if (!PyArg_ParseTuple(args, "iy#:read_folder", &dir_fd, &dir_path, &dir_len)) return NULL;
    if ((size_t)dir_len >= PATH_MAX || strlen(dir_path) != (size_t)dir_len) {
        PyErr_SetString(PyExc_ValueError, "read_folder: bad folder path");
        return NULL;
    }
    Item *items = NULL;
    size_t n = 0;
    int e;
    char *path_buf = malloc(PATH_MAX);
    if (!path_buf) return PyErr_NoMemory();
    memcpy(path_buf, dir_path, dir_len);
    path_buf[dir_len] = '/';
    Py_BEGIN_ALLOW_THREADS
    e = list_names(dir_fd, &items, &n);
    if (!e) {
        qsort(items, n, sizeof *items, by_name);
        for (size_t i = 0; i < n; i++) read_item(dir_fd, dir_path, dir_len, path_buf, &items[i]);
    }
    Py_END_ALLOW_THREADS
    free(path_buf);
    if (e) {
        errno = e;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *list = PyList_New(n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *obj = item_object(&items[i]);
        if (!obj) { Py_CLEAR(list); break; }
        PyList_SET_ITEM(list, i, obj);
    }
    free_items(items, n);
    return list;
}

/* For the tests: read xattrs by path, as on kernels older than 6.13. */
static PyObject *xattrs_by_path(PyObject *self, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    xattrat_missing = on;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"read_folder", read_folder, METH_VARARGS,
     "read_folder(dir_fd, dir_path) -> [(name, st, xattrs, target, error)], sorted by name"},
    {"xattrs_by_path", xattrs_by_path, METH_O,
     "xattrs_by_path(True): read xattrs by path, as on kernels without listxattrat"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "diffimg._folder",
                                    "One folder of a tree read in one call.", -1, methods};

PyMODINIT_FUNC PyInit__folder(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    StatType = PyStructSequence_NewType(&stat_desc);
    if (!StatType) { Py_DECREF(m); return NULL; }
    Py_INCREF(StatType);
    if (PyModule_AddObject(m, "Stat", (PyObject *)StatType) < 0) {
        Py_DECREF(StatType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
