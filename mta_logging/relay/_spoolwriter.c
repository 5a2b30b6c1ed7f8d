/* mta_logging.relay._spoolwriter: the spool writer's threads in C (see spooler.py).
 *
 * Writer(directory, threads) stores files durably from POSIX threads that never take the GIL:
 * each request is a new file created (O_EXCL), written, fsync'd and closed, then `directory`
 * fsync'd (one fsync serving every thread that asks while it runs: group commit, as
 * spool.DirectorySync does it). The event loop learns of finished requests from a pipe
 * (fileno(), readable once at least one is finished) and takes them with completed().
 *
 * What it saves against Python threads is the GIL: a Python thread takes it back after every
 * os call and every lock it waited on, and while the event loop holds it that costs futex calls
 * and context switches on both sides, several per message. These threads touch no Python
 * object: a request keeps its data (bytes, immutable) and its token alive by a reference taken
 * and given back with the GIL held, and hands the threads only C pointers.
 *
 * remove(token, path, second) asks the same threads to unlink path, then second (None: none),
 * a missing file being no error, as Path.unlink(missing_ok=True) has it: the finished
 * messages' removals (queue.py), which would otherwise take a Python thread, and the GIL,
 * after each unlink. Nothing is fsync'd for them (the Python path syncs nothing either).
 *
 * A request's outcome is (token, stage, errno): stage 0 stored (or removed); 1 the file's open
 * failed, 2 its write, fsync or close failed (the file removed), 3 the directory's open failed,
 * 4 its fsync failed (the file removed in both); for a removal 5 path's unlink failed (second
 * left alone), 6 second's. spooler.py and queue.py raise OSError from them as the Python
 * path's os calls would.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../_durable.h"

typedef struct request {
    struct request *next;
    PyObject *token;   /* given back by completed() */
    PyObject *data;    /* the bytes written: kept alive until completed(); NULL: a removal */
    const char *buffer;
    Py_ssize_t size;
    char *path;        /* malloc'd */
    char *second;      /* a removal's second file, malloc'd; NULL: none */
    int mode;
    int stage;
    int error;
} request;

typedef struct {
    PyObject_HEAD
    char *directory;           /* malloc'd */
    int threads;               /* to start */
    pthread_t *started;        /* the threads started (count in running) */
    int running;
    int closed;                /* no request taken any more (close() was called) */
    int stopping;              /* the threads leave once the queue is empty */
    pthread_mutex_t lock;
    pthread_cond_t work;       /* a request queued, or stopping */
    pthread_cond_t synced;     /* a directory fsync finished */
    request *head, *tail;      /* queued */
    request *done_head, *done_tail;  /* finished, for completed() */
    unsigned long long sync_requested, sync_done;
    int sync_running;
    int pipe_read, pipe_write;
    pid_t owner;               /* the process whose threads these are (fork) */
} Writer;

/* fsync of the directory: stage 0, or 3/4 with *error set. */
static int
sync_directory_once(const char *directory, int *error)
{
    int fd;
    do {
        fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        *error = errno;
        return 3;
    }
    int stage = 0;
    if (fsync_retried(fd) < 0) {
        *error = errno;
        stage = 4;
    }
    if (close(fd) < 0 && stage == 0 && errno != EINTR) {
        *error = errno;
        stage = 4;
    }
    return stage;
}

/* Returns once an fsync of the directory that started after the call has finished (0), or
 * with the stage and errno of the one this thread ran and that failed (the threads waiting on
 * it then run another). Called with the lock held. */
static int
sync_directory(Writer *self, int *error)
{
    unsigned long long ticket = ++self->sync_requested;
    while (self->sync_done < ticket) {
        if (self->sync_running) {
            pthread_cond_wait(&self->synced, &self->lock);
            continue;
        }
        self->sync_running = 1;
        unsigned long long covered = self->sync_requested;
        pthread_mutex_unlock(&self->lock);
        int stage = sync_directory_once(self->directory, error);
        pthread_mutex_lock(&self->lock);
        self->sync_running = 0;
        pthread_cond_broadcast(&self->synced);
        if (stage != 0) {
            return stage;
        }
        if (covered > self->sync_done) {
            self->sync_done = covered;
        }
    }
    return 0;
}

/* A request done with its outcome, onto the list for completed(), the pipe written if the
 * list was empty. Called with the lock held (and returns with it held). */
static void
finish(Writer *self, request *item, int stage, int error)
{
    item->stage = stage;
    item->error = error;
    item->next = NULL;
    int was_empty = self->done_head == NULL;
    if (was_empty) {
        self->done_head = item;
    }
    else {
        self->done_tail->next = item;
    }
    self->done_tail = item;
    if (was_empty) {
        /* the pipe is written once per batch, outside the lock (submit waits for it):
         * completed() reads the pipe before it takes the batch, so a request finished
         * after that is announced again */
        pthread_mutex_unlock(&self->lock);
        char byte = 1;
        ssize_t written;
        do {
            written = write(self->pipe_write, &byte, 1);
        } while (written < 0 && errno == EINTR);
        /* EAGAIN: the pipe is full of unread announcements; one is enough */
        pthread_mutex_lock(&self->lock);
    }
}

/* The file of one request, created, written, fsync'd and closed: stage 0, 1 or 2. */
static int
create_synced(request *item, int *error)
{
    int fd;
    do {
        fd = open(item->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)item->mode);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        *error = errno;
        return 1;
    }
    int stage = 0;
    if (write_fully(fd, item->buffer, item->size) < 0 || fsync_retried(fd) < 0) {
        *error = errno;
        stage = 2;
    }
    if (close(fd) < 0 && stage == 0 && errno != EINTR) {
        *error = errno;  /* EINTR: the descriptor is closed on Linux; nothing to retry */
        stage = 2;
    }
    if (stage != 0) {
        unlink(item->path);
    }
    return stage;
}

/* unlink, a missing file being no error: 0, or -1 with errno set. */
static int
unlink_present(const char *path)
{
    if (unlink(path) < 0 && errno != ENOENT) {
        return -1;
    }
    return 0;
}

/* The files of one removal unlinked: stage 0, 5 or 6. */
static int
remove_files(request *item, int *error)
{
    if (unlink_present(item->path) < 0) {
        *error = errno;
        return 5;
    }
    if (item->second != NULL && unlink_present(item->second) < 0) {
        *error = errno;
        return 6;
    }
    return 0;
}

/* A finished request's memory and references (with the GIL held). */
static void
free_request(request *item)
{
    Py_DECREF(item->token);
    Py_XDECREF(item->data);
    free(item->path);
    free(item->second);
    free(item);
}

static void *
run(void *argument)
{
    Writer *self = argument;
    pthread_mutex_lock(&self->lock);
    for (;;) {
        while (self->head == NULL && !self->stopping) {
            pthread_cond_wait(&self->work, &self->lock);
        }
        request *item = self->head;
        if (item == NULL) {
            break;
        }
        self->head = item->next;
        if (self->head == NULL) {
            self->tail = NULL;
        }
        pthread_mutex_unlock(&self->lock);
        int error = 0;
        if (item->data == NULL) {
            int stage = remove_files(item, &error);
            pthread_mutex_lock(&self->lock);
            finish(self, item, stage, error);
            continue;
        }
        int stage = create_synced(item, &error);
        pthread_mutex_lock(&self->lock);
        if (stage == 0) {
            stage = sync_directory(self, &error);
            if (stage != 0) {
                unlink(item->path);
            }
        }
        finish(self, item, stage, error);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

static int
Writer_init(Writer *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"directory", "threads", NULL};
    PyObject *directory = NULL;
    int threads;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&i:Writer", keywords,
                                     PyUnicode_FSConverter, &directory, &threads)) {
        return -1;
    }
    if (threads < 1) {
        Py_DECREF(directory);
        PyErr_SetString(PyExc_ValueError, "threads must be at least 1");
        return -1;
    }
    if (self->directory != NULL) {
        Py_DECREF(directory);
        PyErr_SetString(PyExc_RuntimeError, "Writer.__init__ called twice");
        return -1;
    }
    char *name = strdup(PyBytes_AS_STRING(directory));
    Py_DECREF(directory);
    pthread_t *started = calloc((size_t)threads, sizeof(pthread_t));
    if (name == NULL || started == NULL) {
        free(name);
        free(started);
        PyErr_NoMemory();
        return -1;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        free(name);
        free(started);
        return -1;
    }
    self->pipe_read = fds[0];
    self->pipe_write = fds[1];
    self->threads = threads;
    self->started = started;
    self->owner = getpid();
    self->directory = name;  /* last: a Writer with a directory is whole */
    return 0;
}

static PyObject *
Writer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Writer *self = (Writer *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->pipe_read = self->pipe_write = -1;
        pthread_mutex_init(&self->lock, NULL);
        pthread_cond_init(&self->work, NULL);
        pthread_cond_init(&self->synced, NULL);
    }
    return (PyObject *)self;
}

/* Start the threads (with the lock held, on the first request); 0 or -1 with an error set. */
static int
start_threads(Writer *self)
{
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, 64 * 1024);  /* a few calls deep, no Python */
    sigset_t all, previous;
    sigfillset(&all);
    /* the threads take no signal: Python's handlers run in the main thread, which a signal
     * sent to the process then reaches */
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    int error = 0;
    while (self->running < self->threads) {
        error = pthread_create(&self->started[self->running], &attributes, run, self);
        if (error != 0) {
            break;
        }
        self->running++;
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    pthread_attr_destroy(&attributes);
    if (error != 0 && self->running == 0) {
        errno = error;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;  /* fewer threads than asked for still store everything */
}

/* True if a request may be queued, else False with RuntimeError set. */
static int
may_queue(Writer *self)
{
    if (self->directory == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the writer was not initialised");
        return 0;
    }
    if (self->owner != getpid()) {
        PyErr_SetString(PyExc_RuntimeError, "the spool writer belongs to the parent process");
        return 0;
    }
    if (self->closed) {
        PyErr_SetString(PyExc_RuntimeError, "the spool writer is closed");
        return 0;
    }
    return 1;
}

/* item onto the queue for the threads (started at the first): None, or NULL with the error
 * set and item freed. */
static PyObject *
queue_request(Writer *self, request *item)
{
    pthread_mutex_lock(&self->lock);
    if (self->running == 0 && start_threads(self) < 0) {
        pthread_mutex_unlock(&self->lock);
        free_request(item);
        return NULL;
    }
    if (self->tail == NULL) {
        self->head = item;
    }
    else {
        self->tail->next = item;
    }
    self->tail = item;
    pthread_cond_signal(&self->work);
    pthread_mutex_unlock(&self->lock);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(submit_doc,
"submit(token, path, data, mode, /)\n--\n\n"
"Queue the durable creation of ``path`` (``mode``) holding ``data`` (bytes), then the\n"
"directory's fsync; ``token`` comes back from completed() once both are done or one failed.\n"
"RuntimeError once closed.");

static PyObject *
Writer_submit(Writer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "submit takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!may_queue(self)) {
        return NULL;
    }
    if (!PyBytes_Check(args[2])) {
        PyErr_Format(PyExc_TypeError, "data must be bytes, not %.200s",
                     Py_TYPE(args[2])->tp_name);
        return NULL;
    }
    long mode = PyLong_AsLong(args[3]);  /* a C int, as os.open takes it */
    if (mode == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (mode > INT_MAX || mode < INT_MIN) {
        PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C int");
        return NULL;
    }
    PyObject *path = NULL;
    if (!PyUnicode_FSConverter(args[1], &path)) {
        return NULL;
    }
    request *item = calloc(1, sizeof(request));
    char *name = item == NULL ? NULL : strdup(PyBytes_AS_STRING(path));
    Py_DECREF(path);
    if (name == NULL) {
        free(item);
        PyErr_NoMemory();
        return NULL;
    }
    item->path = name;
    item->mode = (int)mode;
    item->token = Py_NewRef(args[0]);
    item->data = Py_NewRef(args[2]);
    item->buffer = PyBytes_AS_STRING(args[2]);
    item->size = PyBytes_GET_SIZE(args[2]);
    return queue_request(self, item);
}

PyDoc_STRVAR(remove_doc,
"remove(token, path, second, /)\n--\n\n"
"Queue the unlinking of ``path``, then of ``second`` (None: none), a missing file being no\n"
"error; ``token`` comes back from completed() once both are gone or one unlink failed.\n"
"RuntimeError once closed.");

static PyObject *
Writer_remove(Writer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "remove takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!may_queue(self)) {
        return NULL;
    }
    PyObject *path = NULL, *second = NULL;
    if (!PyUnicode_FSConverter(args[1], &path)) {
        return NULL;
    }
    if (args[2] != Py_None && !PyUnicode_FSConverter(args[2], &second)) {
        Py_DECREF(path);
        return NULL;
    }
    request *item = calloc(1, sizeof(request));
    char *name = item == NULL ? NULL : strdup(PyBytes_AS_STRING(path));
    char *second_name = second == NULL || name == NULL ? NULL
        : strdup(PyBytes_AS_STRING(second));
    Py_DECREF(path);
    if (name == NULL || (second != NULL && second_name == NULL)) {
        Py_XDECREF(second);
        free(name);
        free(item);
        PyErr_NoMemory();
        return NULL;
    }
    Py_XDECREF(second);
    item->path = name;
    item->second = second_name;
    item->token = Py_NewRef(args[0]);
    return queue_request(self, item);
}

PyDoc_STRVAR(completed_doc,
"completed()\n--\n\n"
"The requests finished since the last call, in the order they finished: a list of\n"
"(token, stage, errno) (see the module's docstring); empties the pipe of fileno().");

static PyObject *
Writer_completed(Writer *self, PyObject *unused)
{
    if (self->directory != NULL && self->owner != getpid()) {
        return PyList_New(0);  /* a forked child's copy: the pipe and the list are the parent's */
    }
    if (self->pipe_read >= 0) {
        char bytes[256];
        while (read(self->pipe_read, bytes, sizeof(bytes)) > 0) {
        }
    }
    pthread_mutex_lock(&self->lock);
    request *item = self->done_head;
    self->done_head = self->done_tail = NULL;
    pthread_mutex_unlock(&self->lock);
    PyObject *result = PyList_New(0);
    while (item != NULL) {
        request *next = item->next;
        if (result != NULL) {
            PyObject *entry = Py_BuildValue("(Oii)", item->token, item->stage, item->error);
            if (entry == NULL || PyList_Append(result, entry) < 0) {
                Py_CLEAR(result);
            }
            Py_XDECREF(entry);
        }
        free_request(item);
        item = next;
    }
    return result;
}

PyDoc_STRVAR(fileno_doc,
"fileno()\n--\n\n"
"The pipe that is readable once a request has finished (for loop.add_reader).");

static PyObject *
Writer_fileno(Writer *self, PyObject *unused)
{
    if (self->pipe_read < 0) {
        PyErr_SetString(PyExc_ValueError, "the writer's pipe is closed");
        return NULL;
    }
    return PyLong_FromLong(self->pipe_read);
}

/* Stop taking requests and wait (without the GIL) until the threads have done every queued
 * one and left. */
static void
stop_threads(Writer *self)
{
    if (self->directory == NULL || self->owner != getpid()) {
        return;  /* a forked child's copy: its threads (and their lock) are the parent's */
    }
    pthread_mutex_lock(&self->lock);
    self->closed = 1;
    self->stopping = 1;
    pthread_cond_broadcast(&self->work);
    int running = self->running;
    self->running = 0;
    pthread_mutex_unlock(&self->lock);
    for (int at = 0; at < running; at++) {
        pthread_join(self->started[at], NULL);
    }
}

PyDoc_STRVAR(close_doc,
"close()\n--\n\n"
"Refuse new requests, store the queued ones and stop the threads; their outcomes are left\n"
"for completed(). Calling it again does nothing.");

static PyObject *
Writer_close(Writer *self, PyObject *unused)
{
    Py_BEGIN_ALLOW_THREADS
    stop_threads(self);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static void
Writer_dealloc(Writer *self)
{
    stop_threads(self);  /* nothing is queued unless close() was skipped: then it is stored */
    for (request *item = self->done_head, *next; item != NULL; item = next) {
        next = item->next;
        free_request(item);
    }
    if (self->owner == getpid() || self->owner == 0) {
        pthread_mutex_destroy(&self->lock);
        pthread_cond_destroy(&self->work);
        pthread_cond_destroy(&self->synced);
    }
    if (self->pipe_read >= 0) {
        close(self->pipe_read);
    }
    if (self->pipe_write >= 0) {
        close(self->pipe_write);
    }
    free(self->started);
    free(self->directory);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Writer_methods[] = {
    {"submit", (PyCFunction)(void (*)(void))Writer_submit, METH_FASTCALL, submit_doc},
    {"remove", (PyCFunction)(void (*)(void))Writer_remove, METH_FASTCALL, remove_doc},
    {"completed", (PyCFunction)Writer_completed, METH_NOARGS, completed_doc},
    {"fileno", (PyCFunction)Writer_fileno, METH_NOARGS, fileno_doc},
    {"close", (PyCFunction)Writer_close, METH_NOARGS, close_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mta_logging.relay._spoolwriter.Writer",
    .tp_doc = PyDoc_STR("Writer(directory, threads): durable file creation, and removals, from C\n"
                        "threads."),
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Writer_new,
    .tp_init = (initproc)Writer_init,
    .tp_dealloc = (destructor)Writer_dealloc,
    .tp_methods = Writer_methods,
};

static struct PyModuleDef spoolwriter_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mta_logging.relay._spoolwriter",
    .m_doc = "The spool writer's threads in C, without the GIL (see spooler.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__spoolwriter(void)
{
    if (PyType_Ready(&WriterType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&spoolwriter_module);
    if (module != NULL && PyModule_AddObjectRef(module, "Writer", (PyObject *)&WriterType) < 0) {
        Py_CLEAR(module);
    }
    return module;
}
