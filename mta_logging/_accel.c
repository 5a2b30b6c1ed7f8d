/* mta_logging._accel: the per-record work of AccountingLogger's accelerated path, in C.
 *
 * One job: from the logger's arguments to the outcome's lines in the files, for the usual
 * case. build_outcome makes the Outcome as logger._build makes it; a Line makes an outcome's
 * line as speedups.compiled_line does, for the common fields; direct_targets finds the
 * accounting file handlers that would write it, as speedups.emit_direct does (or finds that
 * the record must be made); append_line writes its line to one handler's active file, as
 * AccountingFormatter.outcome_line and AccountingFileHandler.write_line would, for a line
 * that needs no escaping and an open file that needs no rollover. Every other case is
 * handed back to the Python code, unwritten. speedups.py checks that os.write is the os
 * module's before calling in here. This file reads and sets attributes through the ordinary
 * attribute protocol, or, where it keeps what it read (see Watch, Slots, Plan), through what
 * that protocol itself consults: _PyType_Lookup, an instance's dict, a slot's member
 * (PyMember_GetOne/SetOne), with the class's tp_version_tag and the dict's ma_version_tag
 * (both fields of CPython 3.11's public headers; speedups uses this only on 3.11) telling
 * when to read again. It copies nothing of CPython's internals.
 *
 * tests/test_accel.py checks it byte for byte against the Python path.
 *
 * Besides, or_words: the bounce classifier's scan of a text's words (prefilter.py), which
 * falls back to the same work in Python where this module was not built.
 *
 * Beside it, create_synced and fsync_directory: fsutil's durable file creation and directory
 * fsync, their os calls made in one call without the GIL (used by fsutil while those os
 * calls are the os module's own; tests/test_fsutil.py checks the files and errors of both).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include "_durable.h"

/* interned attribute names */
static PyObject *str_line, *str_separator, *str_separators, *str_file, *str_torn,
    *str_fsync, *str_records, *str_size, *str_max_bytes, *str_rollover_at, *str_fd,
    *str_always, *str_disabled, *str_filters, *str_dict, *str_handlers, *str_writes_directly,
    *str_kind, *str_level, *str_formatter, *str_lock, *str_parent, *str_propagate,
    *str_last_second, *str_code, *str_value, *str_text, *str_of, *str_time_queued,
    *str_logger, *str_is_enabled_for, *str_emit, *str_make_record, *str_on_write_error,
    *str_record, *str_outcome_builder, *str_direct_global, *str_template_record, *str_logging,
    *str_log_record_factory, *str_log_record, *str_os, *str_write, *str_os_write,
    *str_accelerated_names, *str_handler_class, *str_formatter_class,
    *str_accelerated_methods, *str_time, *str_write_whole, *str_enter, *str_exit,
    *str_write_failed, *str_cache, *str_outcome, *str_created, *str_filter_set, *str_filter,
    *str_accelerator, *str_filter_global, *str_outcome_global, *str_init, *str_write_record,
    *str_emit_name, *str_emit_in_c, *str_finish_routed;

/* An attribute as a C integer; -1 with an exception set if it is not one. */
static int
ssize_attribute(PyObject *owner, PyObject *name, Py_ssize_t *value)
{
    PyObject *object = PyObject_GetAttr(owner, name);
    if (object == NULL) {
        return -1;
    }
    *value = PyLong_AsSsize_t(object);
    Py_DECREF(object);
    return (*value == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* 1 if the ASCII line holds exactly `separators` separators and no value in it needs
 * escaping (AccountingFormatter.outcome_line's test for ASCII lines), else 0. */
static int
is_plain(const char *data, Py_ssize_t length, char separator, Py_ssize_t separators)
{
    /* memchr, not a loop over the characters: a fifth of the instructions */
    if (memchr(data, '\\', (size_t)length) || memchr(data, '\n', (size_t)length)
            || memchr(data, '\r', (size_t)length)
            || (separator != '\t' && (length == 0 || memchr(data, '"', (size_t)length)))) {
        return 0;
    }
    const char *end = data + length;
    Py_ssize_t count = 0;
    for (const char *at = data; (at = memchr(at, separator, (size_t)(end - at))) != NULL; at++) {
        if (++count > separators) {
            return 0;
        }
    }
    return count == separators;
}

/* 1 if the line that is not ASCII holds exactly `separators` separators and no value in it
 * needs escaping (AccountingFormatter.outcome_line's test for it: formatters._is_plain, no
 * backslash, CR, LF or surrogate, no '"' unless the separator is a tab), else 0. */
static int
is_plain_text(PyObject *line, Py_UCS4 separator, Py_ssize_t separators)
{
    int kind = PyUnicode_KIND(line);
    const void *data = PyUnicode_DATA(line);
    Py_ssize_t count = 0;
    for (Py_ssize_t index = 0; index < PyUnicode_GET_LENGTH(line); index++) {
        Py_UCS4 character = PyUnicode_READ(kind, data, index);
        if (character == '\\' || character == '\n' || character == '\r'
                || Py_UNICODE_IS_SURROGATE(character)
                || (separator != '\t' && character == '"')) {
            return 0;
        }
        if (character == separator && ++count > separators) {
            return 0;
        }
    }
    return count == separators;
}

/* == Objects unchanged since a walk: class version tags and dict versions ==================
 * An attribute that the generic attribute protocol (a class without __getattribute__ or
 * __getattr__ of its own) finds in the instance's __dict__, with no data descriptor of that
 * name on the class, or on the class as a plain value (no descriptor), depends on nothing but
 * that dict and the class (and its bases). CPython 3.11 counts changes of both: the class's
 * version tag (see Seen) and the dict's ma_version_tag (PEP 509: a new number from one global
 * counter at every change of any dict, so a number is never seen twice). A Watch remembers an
 * object's class, tag and dict version; its pointers are compared, never followed. */
typedef struct {
    PyObject *object;
    PyTypeObject *type;
    unsigned int tag;
    uint64_t version;
} Watch;

/* The __dict__ of `object` (a new reference) if its class reads attributes generically and
 * it has an exact dict; else NULL, no exception set. */
static PyObject *
generic_dict(PyObject *object)
{
    if (Py_TYPE(object)->tp_getattro != PyObject_GenericGetAttr) {
        return NULL;
    }
    PyObject *dict = PyObject_GenericGetDict(object, NULL);
    if (dict == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (!PyDict_CheckExact(dict)) {
        Py_CLEAR(dict);
    }
    return dict;
}

/* 1 if `object` is the watched one, of the same class with the same tag, its dict unchanged. */
static int
watch_holds(const Watch *watch, PyObject *object)
{
    PyTypeObject *type = Py_TYPE(object);
    if (object != watch->object || type != watch->type
            || !PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG)
            || type->tp_version_tag != watch->tag) {
        return 0;
    }
    PyObject *dict = generic_dict(object);
    int same = dict != NULL && ((PyDictObject *)dict)->ma_version_tag == watch->version;
    Py_XDECREF(dict);
    return same;
}

/* Watch `object`, whose dict is `dict`: 1, or 0 if its class has no tag to watch. */
static int
watch_now(Watch *watch, PyObject *object, PyObject *dict)
{
    PyTypeObject *type = Py_TYPE(object);
    if (!PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG)) {
        return 0;
    }
    watch->object = object;
    watch->type = type;
    watch->tag = type->tp_version_tag;
    watch->version = ((PyDictObject *)dict)->ma_version_tag;
    return 1;
}

/* `object.<name>` as the generic protocol reads it, when it depends only on `dict` and the
 * class (see Watch): 1 with the value (borrowed) in *value, 0 if it is not such an attribute
 * or is missing (no exception set). */
static int
plain_read(PyObject *object, PyObject *dict, PyObject *name, PyObject **value)
{
    PyObject *on_class = _PyType_Lookup(Py_TYPE(object), name);  /* borrowed, no error */
    if (on_class != NULL && Py_TYPE(on_class)->tp_descr_set != NULL) {
        return 0;  /* a data descriptor: it decides */
    }
    *value = PyDict_GetItemWithError(dict, name);
    if (*value != NULL) {
        return 1;
    }
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *value = on_class;
    return on_class != NULL && Py_TYPE(on_class)->tp_descr_get == NULL;
}

/* == Slots read through their member descriptors =========================================
 * A __slots__ attribute is a member descriptor of the class (a data descriptor: the instance
 * has no dict to shadow it), read and set by PyMember_GetOne/PyMember_SetOne at its offset,
 * as the generic protocol does. While the class's tag (see Seen) is the one seen when the
 * descriptors were found, they are still the class's: read them without looking them up. */
#define SLOTS_MAX 8

typedef struct {
    PyTypeObject *type;  /* compared only */
    unsigned int tag;
    int count;
    PyMemberDef *member[SLOTS_MAX];
} Slots;

/* 1 if `slots` were found on the class of `object` and it has not changed since. */
static int
slots_hold(const Slots *slots, PyObject *object)
{
    PyTypeObject *type = Py_TYPE(object);
    return slots->count > 0 && type == slots->type
        && PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG)
        && type->tp_version_tag == slots->tag;
}

/* Find the member descriptors of `names` (a NULL-ended array) on the class of `object`
 * (generic attribute reads and writes): 1, or 0 (count 0) if one is not a member. */
static int
slots_find(Slots *slots, PyObject *object, PyObject *const *names)
{
    PyTypeObject *type = Py_TYPE(object);
    slots->count = 0;
    if (type->tp_getattro != PyObject_GenericGetAttr
            || type->tp_setattro != PyObject_GenericSetAttr) {
        return 0;
    }
    int count = 0;
    for (; names[count] != NULL; count++) {
        PyObject *descriptor = _PyType_Lookup(type, names[count]);
        if (count == SLOTS_MAX || descriptor == NULL
                || !Py_IS_TYPE(descriptor, &PyMemberDescr_Type)) {
            return 0;
        }
        slots->member[count] = ((PyMemberDescrObject *)descriptor)->d_member;
    }
    if (!PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG)) {
        return 0;
    }
    slots->type = type;
    slots->tag = type->tp_version_tag;
    slots->count = count;
    return 1;
}

/* write(2) as os.write does it: the GIL released, tried again after EINTR unless a signal
 * handler raised. Returns what write returned; -1 with an exception set on failure. */
static Py_ssize_t
write_once(int fd, const char *data, Py_ssize_t length)
{
    Py_ssize_t written;
    int signalled = 0;
    do {
        Py_BEGIN_ALLOW_THREADS
        written = write(fd, data, (size_t)length);
        Py_END_ALLOW_THREADS
    } while (written < 0 && errno == EINTR && !(signalled = PyErr_CheckSignals()));
    if (written < 0 && !signalled) {
        PyErr_SetFromErrno(PyExc_OSError);  /* os.write's error, the same text */
    }
    return written;
}

/* == The reads of append_line kept (see Watch, Slots) =====================================
 * For a few formatters, their _line, _separator and _separators; for a few handlers, their
 * _file, fsync and max_bytes, and the slots of the file's class. Pointers compared, never
 * followed before the watch holds (the values are those of the unchanged dicts). */
#define KEPT_MAX 4

typedef struct {
    Watch watch;
    PyObject *make_line;  /* _line */
    char separator;
    Py_ssize_t separators;
} KeptFormatter;

typedef struct {
    Watch watch;
    PyObject *file;   /* _file (not None) */
    int always;       /* fsync == "always" */
    Py_ssize_t max_bytes;
} KeptHandler;

static KeptFormatter kept_formatters[KEPT_MAX];
static KeptHandler kept_handlers[KEPT_MAX];
static int next_formatter, next_handler;
static Slots file_slots;  /* the file class's torn, records, size, max_bytes (unused), fd, ... */
enum { FILE_TORN, FILE_RECORDS, FILE_SIZE, FILE_FD, FILE_ROLLOVER_AT, FILE_SLOTS };

static const KeptFormatter *
kept_formatter(PyObject *formatter)
{
    for (int at = 0; at < KEPT_MAX; at++) {
        if (kept_formatters[at].watch.object == formatter
                && watch_holds(&kept_formatters[at].watch, formatter)) {
            return &kept_formatters[at];
        }
    }
    return NULL;
}

/* Keep the formatter's reads if they are plain attributes (see plain_read). */
static void
keep_formatter(PyObject *formatter)
{
    KeptFormatter *kept = &kept_formatters[next_formatter];
    PyObject *dict = generic_dict(formatter), *separator, *separators;
    kept->watch.object = NULL;
    if (dict != NULL && watch_now(&kept->watch, formatter, dict)
            && plain_read(formatter, dict, str_line, &kept->make_line)
            && plain_read(formatter, dict, str_separator, &separator)
            && PyUnicode_CheckExact(separator) && PyUnicode_IS_ASCII(separator)
            && PyUnicode_GET_LENGTH(separator) == 1
            && plain_read(formatter, dict, str_separators, &separators)
            && PyLong_CheckExact(separators)) {
        kept->separator = (char)PyUnicode_1BYTE_DATA(separator)[0];
        kept->separators = PyLong_AsSsize_t(separators);
        if (kept->separators == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            kept->watch.object = NULL;
        }
        else {
            next_formatter = (next_formatter + 1) % KEPT_MAX;
        }
    }
    else {
        kept->watch.object = NULL;
    }
    Py_XDECREF(dict);
}

static const KeptHandler *
kept_handler(PyObject *handler)
{
    for (int at = 0; at < KEPT_MAX; at++) {
        if (kept_handlers[at].watch.object == handler
                && watch_holds(&kept_handlers[at].watch, handler)) {
            return &kept_handlers[at];
        }
    }
    return NULL;
}

/* Keep the handler's reads (an open file) if they are plain attributes, and find the file
 * class's slots. */
static void
keep_handler(PyObject *handler)
{
    KeptHandler *kept = &kept_handlers[next_handler];
    PyObject *dict = generic_dict(handler), *fsync, *max_bytes;
    int always;
    kept->watch.object = NULL;
    if (dict != NULL && watch_now(&kept->watch, handler, dict)
            && plain_read(handler, dict, str_file, &kept->file) && kept->file != Py_None
            && plain_read(handler, dict, str_fsync, &fsync) && PyUnicode_CheckExact(fsync)
            && (always = PyUnicode_Compare(fsync, str_always) == 0, !PyErr_Occurred())
            && plain_read(handler, dict, str_max_bytes, &max_bytes)
            && PyLong_CheckExact(max_bytes)
            && ((kept->max_bytes = PyLong_AsSsize_t(max_bytes)) != -1 || !PyErr_Occurred())) {
        kept->always = always;
        next_handler = (next_handler + 1) % KEPT_MAX;
        if (!slots_hold(&file_slots, kept->file)) {
            PyObject *names[] = {str_torn, str_records, str_size, str_fd, str_rollover_at,
                                 NULL};
            slots_find(&file_slots, kept->file, names);
        }
    }
    else {
        kept->watch.object = NULL;
    }
    PyErr_Clear();
    Py_XDECREF(dict);
}

/* file.<name> (slot `slot` of the file's class when the slots hold): a new reference. */
static PyObject *
file_get(PyObject *file, int slot, PyObject *name)
{
    if (slots_hold(&file_slots, file)) {
        return PyMember_GetOne((const char *)file, file_slots.member[slot]);
    }
    return PyObject_GetAttr(file, name);
}

static int
file_set(PyObject *file, int slot, PyObject *name, PyObject *value)
{
    if (slots_hold(&file_slots, file)) {
        return PyMember_SetOne((char *)file, file_slots.member[slot], value);
    }
    return PyObject_SetAttr(file, name, value);
}

/* file.<name> as a C integer; -1 with an exception set if it is not one. */
static int
file_ssize(PyObject *file, int slot, PyObject *name, Py_ssize_t *value)
{
    PyObject *object = file_get(file, slot, name);
    if (object == NULL) {
        return -1;
    }
    *value = PyLong_AsSsize_t(object);
    Py_DECREF(object);
    return (*value == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* The appending itself, once the line is known to be plain ASCII: None if the file is not
 * one to append to here (none open, a write to cut back, a rollover due, fsync "always"),
 * True once written and counted, NULL with the exception of a failed write (nothing
 * counted; a partial write is finished or cut back by activefile.write_whole). */
static PyObject *
append(PyObject *handler, PyObject *line, double created, PyObject *write_whole)
{
    PyObject *file = NULL, *fsync = NULL, *data = NULL, *result = NULL;
    Py_ssize_t records, size, max_bytes, fd;
    Py_ssize_t length = PyUnicode_GET_LENGTH(line);
    int flag;

    const KeptHandler *kept = kept_handler(handler);
    if (kept != NULL) {  /* its _file, fsync and max_bytes as they were read */
        file = Py_NewRef(kept->file);
        flag = kept->always;
    }
    else {
        file = PyObject_GetAttr(handler, str_file);
        if (file == NULL) {
            goto done;
        }
        if (file == Py_None) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        fsync = PyObject_GetAttr(handler, str_fsync);
        if (fsync == NULL || (flag = PyObject_RichCompareBool(fsync, str_always, Py_EQ)) < 0) {
            goto done;
        }
    }
    if (flag) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *torn = file_get(file, FILE_TORN, str_torn);
    if (torn == NULL) {
        goto done;
    }
    flag = PyObject_IsTrue(torn);
    Py_DECREF(torn);
    if (flag < 0 || file_ssize(file, FILE_RECORDS, str_records, &records) < 0
            || file_ssize(file, FILE_SIZE, str_size, &size) < 0
            || (kept != NULL ? (max_bytes = kept->max_bytes, 0)
                : ssize_attribute(handler, str_max_bytes, &max_bytes)) < 0
            || file_ssize(file, FILE_FD, str_fd, &fd) < 0) {
        goto done;
    }
    if (flag) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (records > 0) {
        PyObject *rollover_at = file_get(file, FILE_ROLLOVER_AT, str_rollover_at);
        if (rollover_at == NULL) {
            goto done;
        }
        double deadline = PyFloat_AsDouble(rollover_at);
        Py_DECREF(rollover_at);
        if (deadline == -1.0 && PyErr_Occurred()) {
            goto done;
        }
        /* write_line's test: past max_size with this line and its line end, or due */
        if (length + 1 > max_bytes - size || created >= deadline) {
            result = Py_NewRef(Py_None);
            goto done;
        }
    }
    /* the line and its line end, in one buffer for one write */
    data = PyBytes_FromStringAndSize(NULL, length + 1);
    if (data == NULL) {
        goto done;
    }
    char *buffer = PyBytes_AS_STRING(data);
    memcpy(buffer, PyUnicode_1BYTE_DATA(line), (size_t)length);
    buffer[length] = '\n';
    Py_ssize_t written = write_once((int)fd, buffer, length + 1);
    if (written < 0) {
        goto done;
    }
    PyObject *counted;
    if (written == length + 1) {
        counted = PyLong_FromSsize_t(size + written);
        if (counted == NULL || file_set(file, FILE_SIZE, str_size, counted) < 0) {
            Py_XDECREF(counted);
            goto done;
        }
        Py_DECREF(counted);
    }
    else {
        PyObject *done_part = PyLong_FromSsize_t(written);
        if (done_part == NULL) {
            goto done;
        }
        PyObject *finished = PyObject_CallFunctionObjArgs(write_whole, file, data, done_part,
                                                          NULL);
        Py_DECREF(done_part);
        if (finished == NULL) {
            goto done;
        }
        Py_DECREF(finished);
    }
    counted = PyLong_FromSsize_t(records + 1);
    if (counted == NULL || file_set(file, FILE_RECORDS, str_records, counted) < 0) {
        Py_XDECREF(counted);
        goto done;
    }
    Py_DECREF(counted);
    result = Py_NewRef(Py_True);
    if (kept == NULL) {
        keep_handler(handler);
    }
done:
    Py_XDECREF(file);
    Py_XDECREF(fsync);
    Py_XDECREF(data);
    return result;
}

PyDoc_STRVAR(append_line_doc,
"append_line(handler, formatter, outcome, created, write_whole, /)\n--\n\n"
"Write the line of ``outcome`` logged at ``created`` (``formatter._line``) to the active file\n"
"of ``handler``, with one write(2), as ``handler.write_line(formatter.outcome_line(outcome,\n"
"created), created, None)`` would. Returns True once written and counted; the line (str)\n"
"when it needs no escaping but is not ASCII (``write_line`` encodes it) or this file is not\n"
"one to append to here (none open, a rollover due, a failed write to cut back, fsync\n"
"'always'); None when the line needs escaping (``formatter._escaped_line`` makes it, as\n"
"``outcome_line`` does). Nothing is written unless\n"
"it returns True or raises the OSError of the failed write, as os.write raises it (a\n"
"partial write is passed to ``write_whole(file, data, written)``). The handler's lock must\n"
"be held; the caller checks that the classes and methods are the ones this reproduces.");

static PyObject *
append_line(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "append_line() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *handler = args[0], *formatter = args[1], *created = args[3];
    PyObject *make_line = NULL, *line = NULL, *separator = NULL, *result = NULL;
    Py_ssize_t separators;

    double time_logged = PyFloat_AsDouble(created);
    if (time_logged == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    const KeptFormatter *kept = kept_formatter(formatter);
    make_line = kept != NULL ? Py_NewRef(kept->make_line)
        : PyObject_GetAttr(formatter, str_line);
    if (make_line == NULL) {
        goto done;
    }
    line = PyObject_Vectorcall(make_line, args + 2, 2, NULL);  /* (outcome, created) */
    if (line == NULL) {
        goto done;
    }
    if (!PyUnicode_Check(line)) {
        PyErr_Format(PyExc_TypeError, "formatter._line gave %.100s, not str",
                     Py_TYPE(line)->tp_name);
        goto done;
    }
    char separator_char;
    /* (kept, and unchanged by the line's making) */
    if (kept != NULL && watch_holds(&kept->watch, formatter)) {
        separator_char = kept->separator;
        separators = kept->separators;
    }
    else {
        separator = PyObject_GetAttr(formatter, str_separator);
        if (separator == NULL || ssize_attribute(formatter, str_separators, &separators) < 0) {
            goto done;
        }
        if (!PyUnicode_Check(separator) || !PyUnicode_IS_ASCII(separator)
                || PyUnicode_GET_LENGTH(separator) != 1) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        separator_char = (char)PyUnicode_1BYTE_DATA(separator)[0];
        keep_formatter(formatter);
    }
    if (!PyUnicode_IS_ASCII(line)) {
        /* written by write_line (it encodes), as outcome_line gives it: not made again (a
         * value's str() called twice) unless it needs escaping */
        result = Py_NewRef(is_plain_text(line, (Py_UCS4)(unsigned char)separator_char,
                                         separators) ? line : Py_None);
        goto done;
    }
    if (!is_plain((const char *)PyUnicode_1BYTE_DATA(line), PyUnicode_GET_LENGTH(line),
                  separator_char, separators)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = append(handler, line, time_logged, args[4]);
    if (result == Py_None) {  /* plain, but not for here: the caller writes this line */
        Py_SETREF(result, Py_NewRef(line));
    }
done:
    Py_XDECREF(make_line);
    Py_XDECREF(line);
    Py_XDECREF(separator);
    return result;
}

/* 1 if the attribute is true, 0 if false, -1 with an exception set. */
static int
true_attribute(PyObject *owner, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(owner, name);
    if (value == NULL) {
        return -1;
    }
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

/* == Classes checked once per change ====================================================
 * A check of a class's attributes holds until the class (or a base) changes. CPython keeps
 * a counter for that: a type's version tag (the public tp_version_tag), given to a class when
 * an attribute is looked up on it and taken away (Py_TPFLAGS_VALID_VERSION_TAG cleared)
 * whenever an attribute of it or of a base is set or deleted; a tag is never given twice.
 * A Seen remembers the class and its tag when a check (against `against`) last passed. */
typedef struct {
    PyObject *type;     /* strong */
    PyObject *names;    /* strong: the names the check looked up */
    PyObject *against;  /* strong: what it compared them with */
    unsigned int tag;
} Seen;

/* 1 if the check of `names` of `type` against `against` passed and the class has not
 * changed since. */
static int
seen_unchanged(const Seen *seen, PyObject *type, PyObject *names, PyObject *against)
{
    PyTypeObject *its = (PyTypeObject *)type;
    return seen->type == type && seen->names == names && seen->against == against
        && Py_TYPE(type) == &PyType_Type
        && PyType_HasFeature(its, Py_TPFLAGS_VALID_VERSION_TAG) && its->tp_version_tag == seen->tag;
}

/* Remember that the check of `names` of `type` (a class of the plain metaclass) against
 * `against` passed, if the class has a tag (the lookups of the check gave it one). */
static void
seen_now(Seen *seen, PyObject *type, PyObject *names, PyObject *against)
{
    PyTypeObject *its = (PyTypeObject *)type;
    if (Py_TYPE(type) == &PyType_Type && PyType_HasFeature(its, Py_TPFLAGS_VALID_VERSION_TAG)) {
        Py_XSETREF(seen->type, Py_NewRef(type));
        Py_XSETREF(seen->names, Py_NewRef(names));
        Py_XSETREF(seen->against, Py_NewRef(against));
        seen->tag = its->tp_version_tag;
    }
}

/* 1 if each of `names` read from `owner` equals the next of `methods` (from *at on), 0 if
 * one does not, -1 with an exception set. */
static int
same_methods(PyObject *owner, PyObject *names, PyObject *methods, Py_ssize_t *at)
{
    for (Py_ssize_t index = 0; index < PyTuple_GET_SIZE(names); index++) {
        PyObject *method = PyObject_GetAttr(owner, PyTuple_GET_ITEM(names, index));
        if (method == NULL) {
            return -1;
        }
        int same = PyObject_RichCompareBool(method, PyTuple_GET_ITEM(methods, (*at)++), Py_EQ);
        Py_DECREF(method);
        if (same <= 0) {
            return same;
        }
    }
    return 1;
}

/* 1 if `object`'s __dict__ holds none of `names`, 0 if it holds one, -1 on an error. */
static int
none_set(PyObject *object, PyObject *names)
{
    PyObject *values = PyObject_GetAttr(object, str_dict);
    if (values == NULL) {
        return -1;
    }
    int found = 0, exact = PyDict_CheckExact(values);
    for (Py_ssize_t index = 0; index < PyTuple_GET_SIZE(names) && found == 0; index++) {
        PyObject *name = PyTuple_GET_ITEM(names, index);
        found = exact ? PyDict_Contains(values, name) : PySequence_Contains(values, name);
    }
    Py_DECREF(values);
    return found < 0 ? -1 : !found;
}

/* An exact list with no item: 1, else 0 (what a plan needs of `filters`). */
static int
empty_list(PyObject *object)
{
    return PyList_CheckExact(object) && PyList_GET_SIZE(object) == 0;
}

/* == Plan: direct_targets' answer kept while nothing it read has changed ================
 * Made after direct_targets found targets, by a walk reading the same attributes from the
 * dicts (plain_read); kept only if every one is such an attribute with a value whose test
 * runs no code (exact bools, exact ints, exact lists). Its pointers are compared with what
 * the next call is given and reaches, never followed: a logger's or handler's attributes are
 * read only once its dict is known unchanged, which keeps them alive. */
#define PLAN_STEPS 16
#define PLAN_HANDLERS 64

typedef struct {
    Watch watch;
    PyObject *filters;   /* the logger's filters (the first step's only: an empty list) */
    PyObject *handlers;  /* its handlers list */
    Py_ssize_t count;    /* its length */
    PyObject *next;      /* the parent it propagates to, or None */
} PlanStep;

typedef struct {
    Watch watch;
    int target;
    PyObject *filters;    /* a target's: an empty list */
    PyObject *formatter;  /* a target's */
    PyObject *lock;       /* a target's */
    Watch formatter_watch;
} PlanHandler;

typedef struct {
    int valid;
    /* what direct_targets was given */
    PyObject *level, *kind, *handler_class, *formatter_class, *names, *methods;
    int steps, handlers, targets;
    PlanStep step[PLAN_STEPS];
    PlanHandler handler[PLAN_HANDLERS];
} Plan;

static Plan plan;

/* A target of a plan that held, as emit_here keeps it: its watch (the handler held), and the
 * lock and formatter the plan read of it (held) */
typedef struct {
    Watch watch;
    PyObject *lock, *formatter;
} Planned;

/* 1 if `plan` was made for these arguments and nothing it read has changed. */
static int
plan_holds(const Plan *made, PyObject *logger, PyObject *const *args)
{
    if (!made->valid || made->level != args[1] || made->kind != args[2]
            || made->handler_class != args[3] || made->formatter_class != args[4]
            || made->names != args[5] || made->methods != args[6]) {
        return 0;
    }
    PyObject *current = logger;
    int at = 0;
    for (int index = 0; index < made->steps; index++) {
        const PlanStep *step = &made->step[index];
        if (!watch_holds(&step->watch, current)) {
            return 0;
        }
        /* the dict unchanged: its values (filters, handlers, next) are the ones kept */
        if (index == 0 && PyList_GET_SIZE(step->filters) != 0) {
            return 0;
        }
        if (PyList_GET_SIZE(step->handlers) != step->count) {
            return 0;
        }
        for (Py_ssize_t item = 0; item < step->count; item++, at++) {
            const PlanHandler *kept = &made->handler[at];
            PyObject *handler = PyList_GET_ITEM(step->handlers, item);
            if (!watch_holds(&kept->watch, handler)) {
                return 0;
            }
            if (kept->target && (PyList_GET_SIZE(kept->filters) != 0
                                 || !watch_holds(&kept->formatter_watch, kept->formatter))) {
                return 0;
            }
        }
        current = step->next;
    }
    return current == Py_None;
}

/* The targets of a plan that holds: a new list. */
static PyObject *
plan_targets(const Plan *made)
{
    PyObject *targets = PyList_New(made->targets);
    if (targets == NULL) {
        return NULL;
    }
    Py_ssize_t found = 0;
    for (int index = 0; index < made->handlers; index++) {
        if (made->handler[index].target) {
            PyList_SET_ITEM(targets, found++, Py_NewRef(made->handler[index].watch.object));
        }
    }
    return targets;
}

/* One handler of a plan's walk (see plan_make): 1, or 0 if it cannot be planned. */
static int
plan_handler(Plan *made, PyObject *handler, PyObject *level, PyObject *kind,
             PyObject *formatter_class, PyObject *formatter_names)
{
    if (made->handlers == PLAN_HANDLERS) {
        return 0;
    }
    PlanHandler *kept = &made->handler[made->handlers];
    PyObject *dict = generic_dict(handler), *value, *its_level, *formatter, *lock;
    int done = 0;
    if (dict == NULL || !watch_now(&kept->watch, handler, dict)
            || !plain_read(handler, dict, str_writes_directly, &value)
            || value != Py_True || !plain_read(handler, dict, str_kind, &value)) {
        goto done;
    }
    kept->target = 0;
    if (value == kind) {
        if (!plain_read(handler, dict, str_level, &its_level) || !PyLong_CheckExact(its_level)
                || !PyLong_CheckExact(level)) {
            goto done;
        }
        int reached = PyObject_RichCompareBool(level, its_level, Py_GE);
        if (reached < 0) {
            PyErr_Clear();
            goto done;
        }
        if (reached) {
            PyObject *formatter_dict;
            if (!plain_read(handler, dict, str_formatter, &formatter)
                    || (PyObject *)Py_TYPE(formatter) != formatter_class
                    || !plain_read(handler, dict, str_filters, &kept->filters)
                    || !empty_list(kept->filters) || !plain_read(handler, dict, str_lock, &lock)
                    || lock == Py_None || (formatter_dict = generic_dict(formatter)) == NULL) {
                goto done;
            }
            int plain = watch_now(&kept->formatter_watch, formatter, formatter_dict);
            for (Py_ssize_t index = 0; index < PyTuple_GET_SIZE(formatter_names); index++) {
                PyObject *name = PyTuple_GET_ITEM(formatter_names, index);
                plain = plain && PyUnicode_CheckExact(name)
                    && PyDict_Contains(formatter_dict, name) == 0;
            }
            Py_DECREF(formatter_dict);
            if (!plain) {
                PyErr_Clear();
                goto done;
            }
            kept->formatter = formatter;
            kept->lock = lock;
            kept->target = 1;
            made->targets++;
        }
    }
    done = 1;
    made->handlers++;
done:
    Py_XDECREF(dict);
    return done;
}

/* Make `made` for direct_targets(logger, *args[1:]) (whose answer was `targets`, a list):
 * valid if every attribute the answer rests on could be planned and the plan's targets are
 * those. */
static void
plan_make(Plan *made, PyObject *logger, PyObject *const *args, PyObject *targets)
{
    PyObject *level = args[1], *kind = args[2], *names = args[5];
    PyObject *logger_names = PyTuple_GET_ITEM(names, 0);
    PyObject *formatter_names = PyTuple_GET_ITEM(names, 2);
    made->valid = 0;
    made->steps = made->handlers = made->targets = 0;
    PyObject *current = logger;
    while (current != Py_None) {
        if (made->steps == PLAN_STEPS) {
            return;
        }
        PlanStep *step = &made->step[made->steps];
        PyObject *dict = generic_dict(current), *value;
        int plain = dict != NULL && watch_now(&step->watch, current, dict);
        if (plain && made->steps == 0) {  /* direct_targets' own tests of the logger */
            plain = plain_read(current, dict, str_disabled, &value) && value == Py_False
                && plain_read(current, dict, str_filters, &step->filters)
                && empty_list(step->filters);
            for (Py_ssize_t index = 0; plain && index < PyTuple_GET_SIZE(logger_names); index++) {
                PyObject *name = PyTuple_GET_ITEM(logger_names, index);
                plain = PyUnicode_CheckExact(name) && PyDict_Contains(dict, name) == 0;
            }
        }
        plain = plain && plain_read(current, dict, str_handlers, &step->handlers)
            && PyList_CheckExact(step->handlers);
        if (plain) {
            step->count = PyList_GET_SIZE(step->handlers);
            for (Py_ssize_t index = 0; plain && index < step->count; index++) {
                plain = plan_handler(made, PyList_GET_ITEM(step->handlers, index), level, kind,
                                     args[4], formatter_names);
            }
        }
        plain = plain && plain_read(current, dict, str_propagate, &value)
            && (value == Py_True || value == Py_False);
        if (plain) {
            step->next = Py_None;
            if (value == Py_True) {
                plain = plain_read(current, dict, str_parent, &step->next);
            }
        }
        Py_XDECREF(dict);
        if (!plain) {
            PyErr_Clear();
            return;
        }
        made->steps++;
        current = step->next;
    }
    if (made->targets != PyList_GET_SIZE(targets)) {
        return;
    }
    for (int index = 0, found = 0; index < made->handlers; index++) {
        if (made->handler[index].target
                && made->handler[index].watch.object != PyList_GET_ITEM(targets, found++)) {
            return;
        }
    }
    made->level = level;
    made->kind = kind;
    made->handler_class = args[3];
    made->formatter_class = args[4];
    made->names = names;
    made->methods = args[6];
    made->valid = 1;
}

/* The handlers of `logger` and of the parents it propagates to that take this record (see
 * direct_targets), appended to `targets`: 1, or 0 if one is not a plain accounting file
 * handler (the record must be made), -1 with an exception set. */
static int
walk(PyObject *logger, PyObject *level, PyObject *kind, PyObject *formatter_class,
     PyObject *formatter_names, PyObject *targets)
{
    PyObject *current = Py_NewRef(logger);
    int verdict = 1;
    while (current != Py_None && verdict == 1) {
        PyObject *listed = PyObject_GetAttr(current, str_handlers);
        PyObject *handlers = listed == NULL ? NULL : PySequence_Tuple(listed);
        Py_XDECREF(listed);
        if (handlers == NULL) {
            verdict = -1;
            break;
        }
        for (Py_ssize_t index = 0; index < PyTuple_GET_SIZE(handlers) && verdict == 1; index++) {
            PyObject *handler = PyTuple_GET_ITEM(handlers, index);
            verdict = true_attribute(handler, str_writes_directly);
            if (verdict != 1) {
                break;
            }
            PyObject *its_kind = PyObject_GetAttr(handler, str_kind);
            if (its_kind == NULL) {
                verdict = -1;
                break;
            }
            Py_DECREF(its_kind);  /* compared by identity only */
            if (its_kind != kind) {
                continue;
            }
            PyObject *its_level = PyObject_GetAttr(handler, str_level);
            int reached = its_level == NULL ? -1
                : PyObject_RichCompareBool(level, its_level, Py_GE);
            Py_XDECREF(its_level);
            if (reached < 0) {
                verdict = -1;
                break;
            }
            if (reached == 0) {
                continue;  /* a level above the record's: not a target */
            }
            PyObject *formatter = PyObject_GetAttr(handler, str_formatter);
            if (formatter == NULL) {
                verdict = -1;
                break;
            }
            int plain = none_set(formatter, formatter_names);
            if (plain == 1) {
                int filtered = true_attribute(handler, str_filters);
                plain = filtered < 0 ? -1 : !filtered;
            }
            if (plain == 1) {
                PyObject *lock = PyObject_GetAttr(handler, str_lock);
                plain = lock == NULL ? -1
                    : (lock != Py_None && (PyObject *)Py_TYPE(formatter) == formatter_class);
                Py_XDECREF(lock);
            }
            Py_DECREF(formatter);
            verdict = plain == 1 ? (PyList_Append(targets, handler) < 0 ? -1 : 1) : plain;
        }
        Py_DECREF(handlers);
        if (verdict != 1) {
            break;
        }
        int propagates = true_attribute(current, str_propagate);
        PyObject *next = propagates == 1 ? PyObject_GetAttr(current, str_parent)
            : propagates == 0 ? Py_NewRef(Py_None) : NULL;
        Py_SETREF(current, next);
        if (current == NULL) {
            return -1;
        }
    }
    Py_DECREF(current);
    if (verdict < 0 && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();  /* a handler or formatter of another class: make the record */
        return 0;
    }
    return verdict;
}

/* `names` (3 tuples: the logger's, the handler class's and the formatter class's method
 * names) and `methods` (one for each name) as direct_targets and write_record take them: 1,
 * or 0 with a TypeError naming `function`. */
static int
names_and_methods(const char *function, PyObject *names, PyObject *methods)
{
    if (!PyTuple_Check(names) || PyTuple_GET_SIZE(names) != 3 || !PyTuple_Check(methods)) {
        PyErr_Format(PyExc_TypeError, "%s(): names and methods are tuples", function);
        return 0;
    }
    Py_ssize_t expected = 0;
    for (int owner = 0; owner < 3; owner++) {
        PyObject *its_names = PyTuple_GET_ITEM(names, owner);
        if (!PyTuple_Check(its_names)) {
            PyErr_Format(PyExc_TypeError, "%s(): names are tuples of str", function);
            return 0;
        }
        expected += PyTuple_GET_SIZE(its_names);
    }
    if (expected != PyTuple_GET_SIZE(methods)) {
        PyErr_Format(PyExc_TypeError, "%s(): a method for each name", function);
        return 0;
    }
    return 1;
}

/* 1 if each of `names` of the class `owner` is the next of `methods` (from *at on, which
 * moves past them), looked up again only when the class changed since `seen` last passed
 * (see Seen); 0 if one is not, -1 with an exception set. */
static int
methods_unchanged(Seen *seen, PyObject *owner, PyObject *names, PyObject *methods,
                  Py_ssize_t *at)
{
    if (seen_unchanged(seen, owner, names, methods)) {
        *at += PyTuple_GET_SIZE(names);
        return 1;
    }
    int same = same_methods(owner, names, methods, at);
    if (same == 1) {
        seen_now(seen, owner, names, methods);
    }
    return same;
}

PyDoc_STRVAR(direct_targets_doc,
"direct_targets(logger, level, kind, handler_class, formatter_class, names, methods, /)\n"
"--\n\n"
"The handlers ``speedups.emit_direct`` writes to, after its module-level checks: those of\n"
"``logger`` (and of the parents it propagates to) of ``kind`` whose level ``level``\n"
"reaches; or None if the record must be made: the logger disabled or with filters, one of\n"
"its methods set on it, a method of its class, of ``handler_class`` or of\n"
"``formatter_class`` other than ``methods`` (``names``: the names of the logger's, the\n"
"handler class's and the formatter class's, in that order), a handler not marked\n"
"``_writes_directly``, one of the kind with filters or no lock, its formatter not of\n"
"``formatter_class`` or with one of the formatter's methods set on it, or no target.");

/* The first step of direct_targets(logger, *args[1:]) (its arguments checked): 2 if the plan
 * holds (its targets the answer), 1 if the classes' methods are the ones given but the plan
 * does not hold (made invalid: the walk must be made), 0 if one is not (the answer None), -1
 * with an exception set. */
static int
direct_check(PyObject *logger, PyObject *const *args)
{
    PyObject *names = args[5], *methods = args[6];
    PyObject *owners[3] = {(PyObject *)Py_TYPE(logger), args[3], args[4]};
    Py_ssize_t at = 0;
    /* the classes' methods: looked up again only when a class changed (see Seen) */
    static Seen seen[3];
    int plain = 1;
    for (int owner = 0; owner < 3 && plain == 1; owner++) {
        plain = methods_unchanged(&seen[owner], owners[owner], PyTuple_GET_ITEM(names, owner),
                                  methods, &at);
    }
    if (plain == 1 && plan_holds(&plan, logger, args)) {
        return 2;
    }
    plan.valid = 0;
    return plain;
}

static PyObject *direct_walk(PyObject *const *args, int plain);

static PyObject *
direct_targets(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "direct_targets() takes 7 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!names_and_methods("direct_targets", args[5], args[6])) {
        return NULL;
    }
    int plain = direct_check(args[0], args);
    if (plain == 2) {
        return plan_targets(&plan);  /* nothing it rests on changed since it was made */
    }
    return plain < 0 ? NULL : direct_walk(args, plain);
}

/* The rest of direct_targets(*args) when the plan does not hold (`plain`: direct_check's 1,
 * or 0 for the answer None): the walk, its targets kept in a new plan. */
static PyObject *
direct_walk(PyObject *const *args, int plain)
{
    PyObject *logger = args[0], *level = args[1], *kind = args[2];
    PyObject *formatter_class = args[4], *names = args[5];
    if (plain == 1) {
        int disabled = true_attribute(logger, str_disabled);
        int filtered = disabled != 0 ? disabled : true_attribute(logger, str_filters);
        plain = filtered != 0 ? (filtered < 0 ? -1 : 0)
            : none_set(logger, PyTuple_GET_ITEM(names, 0));
    }
    if (plain < 0) {
        return NULL;
    }
    PyObject *targets = PyList_New(0);
    if (targets == NULL) {
        return NULL;
    }
    if (plain == 1) {
        plain = walk(logger, level, kind, formatter_class, PyTuple_GET_ITEM(names, 2),
                     targets);
    }
    if (plain < 0) {
        Py_DECREF(targets);
        return NULL;
    }
    if (plain == 0 || PyList_GET_SIZE(targets) == 0) {
        Py_SETREF(targets, Py_NewRef(Py_None));
    }
    else {
        plan_make(&plan, logger, args, targets);
    }
    return targets;
}

PyDoc_STRVAR(write_record_doc,
"write_record(handler, record, handler_class, formatter_class, names, methods, outcome_class,\n"
"             write_whole, /)\n--\n\n"
"What ``handler.emit(record)`` writes, for a record that a logger made (``dictConfig``'s\n"
"path), its lock held, made and written by append_line: True when written; the line, for\n"
"``handler.write_line``, when append_line made it and left it to write_line (a file to open,\n"
"a rollover, fsync always, a line not ASCII); None when this call made nothing and ``emit``\n"
"must (the handler not of exactly ``handler_class`` or not\n"
"``_writes_directly``, a method of ``handler_class`` or of ``formatter_class`` other than\n"
"``methods`` (``names`` as direct_targets takes them: the logger's names are skipped), the\n"
"formatter not of ``formatter_class`` or with one of its methods set on it, the record's\n"
"``outcome`` not of exactly ``outcome_class`` or its ``created`` not a float, or a line that\n"
"needs escaping). An error of the write goes up,\n"
"with nothing written (for handleError).");

static PyObject *
write_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_Format(PyExc_TypeError, "write_record() takes 8 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *handler = args[0], *record = args[1], *handler_class = args[2];
    PyObject *formatter_class = args[3], *names = args[4], *methods = args[5];
    PyObject *outcome_class = args[6], *write_whole = args[7];
    if (!names_and_methods("write_record", names, methods)) {
        return NULL;
    }
    if ((PyObject *)Py_TYPE(handler) != handler_class) {
        Py_RETURN_NONE;
    }
    /* the classes' methods (the logger's names skipped): looked up again only when a class
     * changed (see Seen) */
    static Seen seen[2];
    PyObject *owners[2] = {handler_class, formatter_class};
    Py_ssize_t at = PyTuple_GET_SIZE(PyTuple_GET_ITEM(names, 0));
    for (int owner = 0; owner < 2; owner++) {
        int same = methods_unchanged(&seen[owner], owners[owner],
                                     PyTuple_GET_ITEM(names, owner + 1), methods, &at);
        if (same <= 0) {
            return same < 0 ? NULL : Py_NewRef(Py_None);
        }
    }
    int plain = true_attribute(handler, str_writes_directly);
    if (plain <= 0) {
        return plain < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *formatter = NULL, *result = NULL;
    PyObject *outcome = PyObject_GetAttr(record, str_outcome);
    PyObject *created = outcome == NULL ? NULL : PyObject_GetAttr(record, str_created);
    if (created == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();  /* not an accounting record: emit's error for it */
            result = Py_NewRef(Py_None);
        }
        goto release;
    }
    if ((PyObject *)Py_TYPE(outcome) != outcome_class || !PyFloat_CheckExact(created)) {
        result = Py_NewRef(Py_None);
        goto release;
    }
    formatter = PyObject_GetAttr(handler, str_formatter);
    if (formatter == NULL) {
        goto release;
    }
    if ((PyObject *)Py_TYPE(formatter) != formatter_class) {
        result = Py_NewRef(Py_None);
        goto release;
    }
    plain = none_set(formatter, PyTuple_GET_ITEM(names, 2));
    if (plain <= 0) {
        result = plain < 0 ? NULL : Py_NewRef(Py_None);
        goto release;
    }
    PyObject *append_arguments[5] = {handler, formatter, outcome, created, write_whole};
    result = append_line(NULL, append_arguments, 5);  /* True, a line for write_line, None */
release:
    Py_XDECREF(formatter);
    Py_XDECREF(outcome);
    Py_XDECREF(created);
    return result;
}

PyDoc_STRVAR(build_outcome_doc,
"build_outcome(build, template, new_object, outcome_class, kind, rcpt, time_queued,\n"
"              src_mta, src_ip, dest_ip, vmta, job_id, dsn_status, dsn_msg, delay,\n"
"              bounce_cat, headers, extra, details, /)\n--\n\n"
"What ``build(kind, rcpt, ..., details)`` (``logger._build``) returns, for arguments that\n"
"need none of its conversions and pass its checks as they are: ``rcpt`` non-empty text,\n"
"``time_queued`` None or a float, ``delay`` None, an int or a float (not a bool),\n"
"``job_id`` None or text, ``headers`` None or a dict, no ``details``. The Outcome is made as\n"
"``build`` makes it: ``new_object(outcome_class)`` given a copy of ``template`` (the keys of\n"
"build's dict, in its order) holding the arguments, headers and extra None made empty\n"
"dicts, as its ``__dict__``. Any other arguments go to ``build`` itself (its errors, its\n"
"conversions).");

/* the arguments of build, after the four bound ones */
enum { KIND, RCPT, TIME_QUEUED, SRC_MTA, SRC_IP, DEST_IP, VMTA, JOB_ID, DSN_STATUS, DSN_MSG,
       DELAY, BOUNCE_CAT, HEADERS, EXTRA, DETAILS, BUILD_ARGUMENTS };

static PyObject *
build_outcome(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 + BUILD_ARGUMENTS) {
        PyErr_Format(PyExc_TypeError, "build_outcome() takes %d arguments (%zd given)",
                     4 + BUILD_ARGUMENTS, nargs);
        return NULL;
    }
    PyObject *build = args[0], *template = args[1], *new_object = args[2];
    PyObject *outcome_class = args[3];
    PyObject *const *given = args + 4;
    PyObject *rcpt = given[RCPT], *time_queued = given[TIME_QUEUED], *delay = given[DELAY];
    PyObject *job_id = given[JOB_ID], *headers = given[HEADERS], *details = given[DETAILS];
    if (!PyDict_CheckExact(template) || PyDict_GET_SIZE(template) != DETAILS) {
        PyErr_SetString(PyExc_TypeError, "build_outcome(): a template of the fields");
        return NULL;
    }
    if (!(PyUnicode_CheckExact(rcpt) && PyUnicode_GET_LENGTH(rcpt) > 0)
            || !(time_queued == Py_None || PyFloat_CheckExact(time_queued))
            || !(delay == Py_None || PyFloat_CheckExact(delay) || PyLong_CheckExact(delay))
            || !(job_id == Py_None || PyUnicode_CheckExact(job_id))
            || !(headers == Py_None || PyDict_CheckExact(headers))
            || !PyDict_CheckExact(details) || PyDict_GET_SIZE(details) != 0) {
        return PyObject_Vectorcall(build, given, BUILD_ARGUMENTS, NULL);
    }
    PyObject *values = PyDict_Copy(template);
    if (values == NULL) {
        return NULL;
    }
    PyObject *key, *ignored, *outcome = NULL;
    Py_ssize_t position = 0;
    for (int field = KIND; PyDict_Next(template, &position, &key, &ignored); field++) {
        PyObject *value = given[field];
        int failed;
        if ((field == HEADERS || field == EXTRA) && value == Py_None) {
            PyObject *empty = PyDict_New();
            failed = empty == NULL || PyDict_SetItem(values, key, empty) < 0;
            Py_XDECREF(empty);
        }
        else {
            failed = PyDict_SetItem(values, key, value) < 0;
        }
        if (failed) {
            goto done;
        }
    }
    outcome = PyObject_CallOneArg(new_object, outcome_class);
    if (outcome != NULL && PyObject_GenericSetAttr(outcome, str_dict, values) < 0) {
        Py_CLEAR(outcome);  /* (object.__setattr__, past the frozen class's __setattr__) */
    }
done:
    Py_DECREF(values);
    return outcome;
}

/* == Line: the compiled line function of speedups.compiled_line, for the common fields ==== */

/* what each field of a Line's spec is (speedups.accelerated_line makes the spec) */
enum { FIELD_ATTRIBUTE, FIELD_TYPE, FIELD_LOGGED, FIELD_QUEUED };

/* The outcome an Entry has just made, while the same call writes its record (on this thread:
 * a call nested in it sets its own and puts this one back): its line reads the values the
 * Entry made its dict of (`values`, of the names `fields`; `count` of them) rather than
 * looking each up again in that dict, as long as the dict has the version it had when made
 * (PEP 509: nothing set in it since). Values the dict holds that are not the Entry's as given
 * (the new dicts of headers and extra: `count` leaves them out) are looked up as usual. */
typedef struct {
    PyObject *outcome;        /* compared, never followed; NULL: none */
    uint64_t version;         /* its dict's version when made */
    PyObject *const *values;  /* borrowed: the Entry's arguments, alive during its call */
    PyObject *fields;         /* tuple of interned names */
    Py_ssize_t count;
} Fresh;

static _Thread_local Fresh fresh;

typedef struct {
    PyObject_HEAD
    PyObject *spec;         /* tuple of (what, argument) pairs, one per field */
    PyObject *separator;    /* str */
    PyObject *placeholder;  /* str: an unknown value */
    PyObject *kind_class;   /* mta_logging.outcome.Kind */
    PyObject *outcome_class;  /* mta_logging.outcome.Outcome */
    int *what;              /* each field's what, read from the spec when made */
    /* for each field, the index of its value in a Fresh's values of `fresh_fields` (-1: none),
     * found at the first line made of a fresh outcome with those fields */
    PyObject *fresh_fields;
    int *fresh_at;
    vectorcallfunc vectorcall;
} Line;

/* The index in fresh.values of each field of the line's spec (-1 for none): 0, or -1 with an
 * exception set. */
static int
line_map_fresh(Line *self)
{
    for (Py_ssize_t index = 0; index < PyTuple_GET_SIZE(self->spec); index++) {
        int what = self->what[index];
        PyObject *name = what == FIELD_ATTRIBUTE
            ? PyTuple_GET_ITEM(PyTuple_GET_ITEM(self->spec, index), 1)
            : what == FIELD_TYPE ? str_kind : what == FIELD_QUEUED ? str_time_queued : NULL;
        self->fresh_at[index] = -1;
        for (Py_ssize_t at = 0; name != NULL && at < fresh.count; at++) {
            int same = PyUnicode_Check(name)
                ? PyUnicode_Compare(name, PyTuple_GET_ITEM(fresh.fields, at)) : 1;
            if (same == -1 && PyErr_Occurred()) {
                return -1;
            }
            if (same == 0) {
                self->fresh_at[index] = (int)at;
                break;
            }
        }
    }
    Py_XSETREF(self->fresh_fields, Py_NewRef(fresh.fields));
    return 0;
}

/* outcome.<name>: for an Outcome (a dataclass without slots or descriptors: its fields are
 * in the instance's __dict__, the defaults of the others on the class) read from the dict
 * first; for anything else, and whatever the dict lacks, the attribute protocol. */
static PyObject *
outcome_attribute(Line *self, PyObject *outcome, PyObject *values, PyObject *name)
{
    if (values != NULL) {
        PyObject *value = PyDict_GetItemWithError(values, name);
        if (value != NULL) {
            return Py_NewRef(value);
        }
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    return PyObject_GetAttr(outcome, name);
}

/* A value as the compiled line's _as_text makes it text: str as it is, None the
 * placeholder, anything else str(). Steals `value`. */
static PyObject *
as_text(Line *self, PyObject *value)
{
    if (value == NULL || PyUnicode_CheckExact(value)) {
        return value;
    }
    if (value == Py_None) {
        Py_DECREF(value);
        return Py_NewRef(self->placeholder);
    }
    Py_SETREF(value, PyObject_Str(value));
    return value;
}

/* The text of `timestamp` from a TimeText: its one-second cache (last_second: start, end,
 * text) when the timestamp is in that second, else the method `method` ("text" or "of"). */
static PyObject *
time_text(PyObject *times, PyObject *timestamp, PyObject *method, int cached_only_for_float)
{
    if (!cached_only_for_float || PyFloat_CheckExact(timestamp)) {
        PyObject *cache = PyObject_GetAttr(times, str_last_second);
        if (cache == NULL) {
            return NULL;
        }
        if (PyTuple_Check(cache) && PyTuple_GET_SIZE(cache) == 3) {
            PyObject *start = PyTuple_GET_ITEM(cache, 0), *end = PyTuple_GET_ITEM(cache, 1);
            int before;
            if (PyFloat_CheckExact(start) && PyFloat_CheckExact(end)
                    && PyFloat_CheckExact(timestamp)) {  /* float's comparisons, without them */
                double at = PyFloat_AS_DOUBLE(timestamp);
                before = PyFloat_AS_DOUBLE(start) <= at && at < PyFloat_AS_DOUBLE(end);
            }
            else {
                int after = PyObject_RichCompareBool(start, timestamp, Py_LE);
                before = after == 1 ? PyObject_RichCompareBool(timestamp, end, Py_LT) : after;
            }
            if (before < 0) {
                Py_DECREF(cache);
                return NULL;
            }
            if (before == 1) {
                PyObject *text = Py_NewRef(PyTuple_GET_ITEM(cache, 2));
                Py_DECREF(cache);
                return text;
            }
        }
        Py_DECREF(cache);
    }
    return PyObject_CallMethodOneArg(times, method, timestamp);
}

/* separator.join(texts): for ASCII text, copied into the new str directly (what str.join
 * makes of it, without its general steps); anything else is str.join's (its errors). */
static PyObject *
joined(PyObject *separator, PyObject *texts)
{
    Py_ssize_t count = PyTuple_GET_SIZE(texts);
    Py_ssize_t gap = PyUnicode_GET_LENGTH(separator);
    Py_ssize_t length = count > 0 ? gap * (count - 1) : 0;
    int ascii = PyUnicode_IS_ASCII(separator);
    for (Py_ssize_t index = 0; index < count && ascii; index++) {
        PyObject *text = PyTuple_GET_ITEM(texts, index);
        ascii = PyUnicode_CheckExact(text) && PyUnicode_IS_ASCII(text);
        length += ascii ? PyUnicode_GET_LENGTH(text) : 0;
    }
    if (!ascii || count == 0) {
        return PyUnicode_Join(separator, texts);
    }
    PyObject *line = PyUnicode_New(length, 127);
    if (line == NULL) {
        return NULL;
    }
    Py_UCS1 *at = PyUnicode_1BYTE_DATA(line);
    for (Py_ssize_t index = 0; index < count; index++) {
        PyObject *text = PyTuple_GET_ITEM(texts, index);
        if (index > 0) {
            memcpy(at, PyUnicode_1BYTE_DATA(separator), (size_t)gap);
            at += gap;
        }
        memcpy(at, PyUnicode_1BYTE_DATA(text), (size_t)PyUnicode_GET_LENGTH(text));
        at += PyUnicode_GET_LENGTH(text);
    }
    return line;
}

static PyObject *
line_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Line *self = (Line *)callable;
    if (PyVectorcall_NARGS(nargsf) != 2 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "a line takes (outcome, time_logged)");
        return NULL;
    }
    PyObject *outcome = args[0], *time_logged = args[1], *values = NULL, *line = NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(self->spec);
    PyObject *texts = PyTuple_New(count);
    if (texts == NULL) {
        return NULL;
    }
    if ((PyObject *)Py_TYPE(outcome) == self->outcome_class
            && (values = PyObject_GenericGetDict(outcome, NULL)) == NULL) {
        goto done;
    }
    /* the outcome an Entry has just made, its dict unchanged: the Entry's values (see Fresh) */
    const int *at = values != NULL && outcome == fresh.outcome && PyDict_CheckExact(values)
        ? self->fresh_at : NULL;
    if (at != NULL && self->fresh_fields != fresh.fields && line_map_fresh(self) < 0) {
        goto done;
    }
    /* (the version checked at each field: making a field's text may run code, str() or a
     * TimeText's, that sets another field) */
#define FIELD_VALUE(name) (at != NULL && at[index] >= 0 \
                           && ((PyDictObject *)values)->ma_version_tag == fresh.version \
                           ? Py_NewRef(fresh.values[at[index]]) \
                           : outcome_attribute(self, outcome, values, (name)))
    for (Py_ssize_t index = 0; index < count; index++) {
        PyObject *field = PyTuple_GET_ITEM(self->spec, index);
        PyObject *argument = PyTuple_GET_ITEM(field, 1), *text;
        switch (self->what[index]) {
        case FIELD_ATTRIBUTE:
            text = as_text(self, FIELD_VALUE(argument));
            break;
        case FIELD_TYPE: {  /* Kind.code, or .value of another enum */
            PyObject *kind = FIELD_VALUE(str_kind);
            text = kind == NULL ? NULL : PyObject_GetAttr(
                kind, (PyObject *)Py_TYPE(kind) == self->kind_class ? str_code : str_value);
            Py_XDECREF(kind);
            break;
        }
        case FIELD_LOGGED:
            text = time_text(argument, time_logged, str_text, 0);
            break;
        case FIELD_QUEUED: {
            PyObject *queued = FIELD_VALUE(str_time_queued);
            text = queued == NULL ? NULL : queued == Py_None ? Py_NewRef(self->placeholder)
                : time_text(argument, queued, str_of, 1);
            Py_XDECREF(queued);
            break;
        }
        default:
            PyErr_SetString(PyExc_ValueError, "a line's spec names an unknown field");
            text = NULL;
        }
        if (text == NULL) {
            goto done;
        }
        PyTuple_SET_ITEM(texts, index, text);
    }
#undef FIELD_VALUE
    line = joined(self->separator, texts);
done:
    Py_XDECREF(values);
    Py_DECREF(texts);
    return line;
}

static PyObject *
line_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *spec, *separator, *placeholder, *kind_class, *outcome_class;
    static char *keywords[] = {"spec", "separator", "placeholder", "kind_class",
                               "outcome_class", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!UUOO:Line", keywords, &PyTuple_Type,
                                     &spec, &separator, &placeholder, &kind_class,
                                     &outcome_class)) {
        return NULL;
    }
    for (Py_ssize_t index = 0; index < PyTuple_GET_SIZE(spec); index++) {
        PyObject *field = PyTuple_GET_ITEM(spec, index);
        if (!PyTuple_Check(field) || PyTuple_GET_SIZE(field) != 2
                || !PyLong_Check(PyTuple_GET_ITEM(field, 0))) {
            PyErr_SetString(PyExc_TypeError, "Line: the spec holds (what, argument) pairs");
            return NULL;
        }
    }
    Py_ssize_t count = PyTuple_GET_SIZE(spec);
    int *what = PyMem_New(int, count > 0 ? count : 1);
    if (what == NULL) {
        return PyErr_NoMemory();
    }
    for (Py_ssize_t index = 0; index < count; index++) {
        long its = PyLong_AsLong(PyTuple_GET_ITEM(PyTuple_GET_ITEM(spec, index), 0));
        if (its == -1 && PyErr_Occurred()) {
            PyMem_Free(what);
            return NULL;
        }
        what[index] = its < FIELD_ATTRIBUTE || its > FIELD_QUEUED ? -1 : (int)its;
    }
    int *fresh_at = PyMem_New(int, count > 0 ? count : 1);
    Line *self = fresh_at == NULL ? NULL : (Line *)type->tp_alloc(type, 0);
    if (self == NULL) {
        PyMem_Free(what);
        PyMem_Free(fresh_at);
        return fresh_at == NULL ? PyErr_NoMemory() : NULL;
    }
    self->what = what;
    self->fresh_at = fresh_at;
    self->spec = Py_NewRef(spec);
    self->separator = Py_NewRef(separator);
    self->placeholder = Py_NewRef(placeholder);
    self->kind_class = Py_NewRef(kind_class);
    self->outcome_class = Py_NewRef(outcome_class);
    self->vectorcall = line_vectorcall;
    return (PyObject *)self;
}

static int
line_traverse(Line *self, visitproc visit, void *arg)
{
    Py_VISIT(self->spec);
    Py_VISIT(self->kind_class);
    Py_VISIT(self->outcome_class);
    return 0;
}

static int
line_clear(Line *self)
{
    Py_CLEAR(self->spec);
    Py_CLEAR(self->separator);
    Py_CLEAR(self->placeholder);
    Py_CLEAR(self->kind_class);
    Py_CLEAR(self->outcome_class);
    Py_CLEAR(self->fresh_fields);
    return 0;
}

static void
line_dealloc(Line *self)
{
    PyObject_GC_UnTrack(self);
    line_clear(self);
    PyMem_Free(self->what);
    PyMem_Free(self->fresh_at);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(line_doc,
"Line(spec, separator, placeholder, kind_class, outcome_class)\n--\n\n"
"``line(outcome, time_logged)``: what ``speedups.compiled_line`` gives for the fields of\n"
"``spec`` (made by ``speedups.accelerated_line``: for each field, (0, attribute name) for a\n"
"value written as text, (1, None) for the type, (2, the TimeText) for the time logged,\n"
"(3, a TimeText of its own) for the time queued), joined by ``separator``, unknown values\n"
"as ``placeholder``, nothing escaped.");

static PyTypeObject LineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mta_logging._accel.Line",
    .tp_basicsize = sizeof(Line),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = line_doc,
    .tp_new = line_new,
    .tp_traverse = (traverseproc)line_traverse,
    .tp_clear = (inquiry)line_clear,
    .tp_dealloc = (destructor)line_dealloc,
    .tp_vectorcall_offset = offsetof(Line, vectorcall),
    .tp_call = PyVectorcall_Call,
};

/* == Emitter: speedups.emit_accelerated's usual case in C ============================= */

/* The class of the handlers' locks (an immutable one: its methods cannot change) and its
 * __enter__ and __exit__, kept once seen (see enter_lock). */
typedef struct {
    PyTypeObject *type;
    PyObject *enter, *exit;
} KeptLock;

/* speedups._direct when last read (a frozen dataclass: another one is made, never this one
 * changed) and its handler_class, formatter_class and accelerated_methods (see keep_direct) */
typedef struct {
    PyObject *direct;
    PyObject *values[3];
} KeptDirect;

/* the globals of speedups an Emitter reads when it is made (_direct: at each record) */
enum { G_TEMPLATE_RECORD, G_LOGGING, G_LOG_RECORD, G_OS, G_OS_WRITE, G_NAMES, G_TIME,
       G_WRITE_WHOLE, G_WRITE_FAILED, G_COUNT };

typedef struct {
    PyObject_HEAD
    PyObject *python;    /* speedups.emit_accelerated: what every other call gets */
    PyObject *finish;    /* speedups.finish_accelerated: a line append_line did not write */
    PyObject *speedups;  /* the globals of speedups */
    PyObject *constant[G_COUNT];
    /* the dict versions of the logging and os modules when their check last passed, and of
     * the time module when its time was read (kept_time: a value of that dict) */
    uint64_t logging_version, os_version, time_version;
    PyObject *kept_time;
    KeptLock lock;
    KeptDirect direct;
    vectorcallfunc vectorcall;
} Emitter;

static int class_attribute_is(PyObject *owner, PyObject *name, PyObject *expected);

/* The version of a module's dict (a module of the plain class, whose attributes are its
 * dict's), or 0 for any other. */
static uint64_t
module_version(PyObject *module)
{
    if (!Py_IS_TYPE(module, &PyModule_Type)) {
        return 0;
    }
    PyObject *dict = PyModule_GetDict(module);
    return dict != NULL && PyDict_CheckExact(dict) ? ((PyDictObject *)dict)->ma_version_tag : 0;
}

/* class_attribute_is(module, name, expected), not asked again while the module's dict has
 * the version it had when the answer was 1 (*kept). */
static int
module_attribute_is(PyObject *module, PyObject *name, PyObject *expected, uint64_t *kept)
{
    uint64_t version = module_version(module);
    if (version != 0 && version == *kept) {
        return 1;
    }
    int same = class_attribute_is(module, name, expected);
    *kept = same == 1 ? version : 0;
    return same;
}

/* `type.<name>` bound to `object` as `with` looks its special methods up (on the class, the
 * descriptor's __get__ asked), a new reference; NULL with no exception set if missing. */
static PyObject *
special_method(PyObject *object, PyObject *name)
{
    PyObject *found = _PyType_Lookup(Py_TYPE(object), name);  /* borrowed */
    if (found == NULL) {
        return NULL;
    }
    descrgetfunc get = Py_TYPE(found)->tp_descr_get;
    return get == NULL ? Py_NewRef(found) : get(found, object, (PyObject *)Py_TYPE(object));
}

/* `with lock:` entered as the interpreter enters it: __enter__ and __exit__ looked up on the
 * lock's class (CPython 3.11's TypeErrors when one is missing), then __enter__ called. The
 * lock of the class kept (an immutable type whose __enter__ and __exit__ are method
 * descriptors: they cannot change) is entered through the kept methods, *exit set to NULL;
 * any other has its bound __exit__ in *exit (a new reference). 0, or -1 with an exception
 * set (*exit NULL). */
static int
enter_lock(KeptLock *kept, PyObject *lock, PyObject **exit)
{
    *exit = NULL;
    PyTypeObject *type = Py_TYPE(lock);
    if (kept->type == NULL && PyType_HasFeature(type, Py_TPFLAGS_IMMUTABLETYPE)
            && type->tp_getattro == PyObject_GenericGetAttr && type->tp_dictoffset == 0) {
        PyObject *enter = _PyType_Lookup(type, str_enter), *exit = _PyType_Lookup(type, str_exit);
        if (enter != NULL && exit != NULL && Py_IS_TYPE(enter, &PyMethodDescr_Type)
                && Py_IS_TYPE(exit, &PyMethodDescr_Type)) {
            kept->type = (PyTypeObject *)Py_NewRef(type);
            kept->enter = Py_NewRef(enter);
            kept->exit = Py_NewRef(exit);
        }
    }
    if (type == kept->type) {
        PyObject *entered = PyObject_Vectorcall(kept->enter, &lock, 1, NULL);
        Py_XDECREF(entered);
        return entered == NULL ? -1 : 0;
    }
    PyObject *enter = special_method(lock, str_enter);
    if (enter == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError,
                         "'%.200s' object does not support the context manager protocol",
                         type->tp_name);
        }
        return -1;
    }
    PyObject *bound_exit = special_method(lock, str_exit);
    if (bound_exit == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "'%.200s' object does not support the context "
                         "manager protocol (missed __exit__ method)", type->tp_name);
        }
        Py_DECREF(enter);
        return -1;
    }
    PyObject *entered = PyObject_CallNoArgs(enter);
    Py_DECREF(enter);
    if (entered == NULL) {
        Py_DECREF(bound_exit);
        return -1;
    }
    Py_DECREF(entered);
    *exit = bound_exit;
    return 0;
}

/* __exit__(type, value, traceback) of a lock entered by enter_lock (`exit` as it set it,
 * consumed); a new reference to what it returned, or NULL with an exception set. */
static PyObject *
exit_lock(KeptLock *kept, PyObject *lock, PyObject *exit, PyObject *type, PyObject *value,
          PyObject *traceback)
{
    PyObject *arguments[4] = {lock, type, value, traceback};
    if (exit == NULL) {
        return PyObject_Vectorcall(kept->exit, arguments, 4, NULL);
    }
    PyObject *left = PyObject_Vectorcall(exit, arguments + 1, 3, NULL);
    Py_DECREF(exit);
    return left;
}

static int
kept_lock_traverse(KeptLock *kept, visitproc visit, void *arg)
{
    Py_VISIT(kept->type);
    Py_VISIT(kept->enter);
    Py_VISIT(kept->exit);
    return 0;
}

static void
kept_lock_clear(KeptLock *kept)
{
    Py_CLEAR(kept->type);
    Py_CLEAR(kept->enter);
    Py_CLEAR(kept->exit);
}

/* lock.__exit__(None, None, None) after the step under it (`exit` as enter_lock set it,
 * consumed); -1 with an exception set */
static int
leave(KeptLock *kept, PyObject *lock, PyObject *exit)
{
    PyObject *left = exit_lock(kept, lock, exit, Py_None, Py_None, Py_None);
    Py_XDECREF(left);
    return left == NULL ? -1 : 0;
}

/* The exception set, taken as a value (normalised, its traceback on it), a new reference. */
static PyObject *
fetched_exception(void)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
}

/* The lock left as `with` leaves it when the step under it raised (the exception set;
 * `exit` as enter_lock set it, consumed): __exit__ given the exception; 1 if it returned a
 * true value (the exception suppressed: none set), else -1 with the exception set again, or
 * __exit__'s own with that one as its context. */
static int
leave_raising(KeptLock *kept, PyObject *lock, PyObject *exit)
{
    PyObject *value = fetched_exception();
    PyObject *type = Py_NewRef(Py_TYPE(value)), *traceback = PyException_GetTraceback(value);
    PyObject *left = exit_lock(kept, lock, exit, type, value,
                               traceback == NULL ? Py_None : traceback);
    int suppressed = left == NULL ? -1 : PyObject_IsTrue(left);
    Py_XDECREF(left);
    if (suppressed < 0) {
        _PyErr_ChainExceptions(type, value, traceback);
        return -1;
    }
    if (suppressed) {
        Py_DECREF(type);
        Py_DECREF(value);
        Py_XDECREF(traceback);
        return 1;
    }
    PyErr_Restore(type, value, traceback);
    return -1;
}

/* kept->values: the handler_class, formatter_class and accelerated_methods of `direct`
 * (speedups._direct), read again only when it is another object than the one kept; -1 with
 * an exception set. */
static int
keep_direct(KeptDirect *kept, PyObject *direct)
{
    if (direct == kept->direct) {
        return 0;
    }
    PyObject *read[3] = {PyObject_GetAttr(direct, str_handler_class), NULL, NULL};
    read[1] = read[0] == NULL ? NULL : PyObject_GetAttr(direct, str_formatter_class);
    read[2] = read[1] == NULL ? NULL : PyObject_GetAttr(direct, str_accelerated_methods);
    if (read[2] == NULL) {
        Py_XDECREF(read[0]);
        Py_XDECREF(read[1]);
        return -1;
    }
    Py_XSETREF(kept->direct, Py_NewRef(direct));
    for (int at = 0; at < 3; at++) {
        Py_XSETREF(kept->values[at], read[at]);
    }
    return 0;
}

static int
kept_direct_traverse(KeptDirect *kept, visitproc visit, void *arg)
{
    Py_VISIT(kept->direct);
    for (int at = 0; at < 3; at++) {
        Py_VISIT(kept->values[at]);
    }
    return 0;
}

static void
kept_direct_clear(KeptDirect *kept)
{
    Py_CLEAR(kept->direct);
    for (int at = 0; at < 3; at++) {
        Py_CLEAR(kept->values[at]);
    }
}

/* 1 if `owner.<name>` (a class) is `expected`, 0 if not, -1 with an exception set. */
static int
class_attribute_is(PyObject *owner, PyObject *name, PyObject *expected)
{
    PyObject *value = PyObject_GetAttr(owner, name);
    if (value == NULL) {
        return -1;
    }
    Py_DECREF(value);  /* compared by identity only */
    return value == expected;
}

/* speedups.<name> (its globals, read at each record), borrowed; NULL with KeyError if unset */
static PyObject *
speedups_global(PyObject *speedups, PyObject *name)
{
    PyObject *value = PyDict_GetItemWithError(speedups, name);
    if (value == NULL && !PyErr_Occurred()) {
        PyErr_SetObject(PyExc_KeyError, name);
    }
    return value;
}


/* What speedups.emit_accelerated(logger, level, outcome, make_record) answers and writes,
 * for its usual case: 1 or 0 (a handler marked the record WRITE_FAILED or not), -1 with an
 * exception set, 2 if this is not its usual case (a check of emit_accelerated fails,
 * os.write is not the os module's, or direct_targets gives None): nothing done, the caller
 * calls emit_accelerated. Each handler's line is append_line's, as emit_accelerated has it;
 * a line it did not write, or its write's failure, goes to finish_accelerated (lock held).
 * `kind`: outcome.kind where the caller made the outcome (an Entry), else NULL (read). */
static int
emit_here(Emitter *self, PyObject *logger, PyObject *level, PyObject *outcome, PyObject *kind,
          PyObject *make_record)
{
    PyObject *const *constant = self->constant;
    PyObject *direct = speedups_global(self->speedups, str_direct_global);
    if (direct == NULL) {
        return -1;
    }
    if (direct == Py_None || make_record != constant[G_TEMPLATE_RECORD]) {
        return 2;
    }
    int plain = module_attribute_is(constant[G_LOGGING], str_log_record_factory,
                                    constant[G_LOG_RECORD], &self->logging_version);
    if (plain == 1) {
        plain = module_attribute_is(constant[G_OS], str_write, constant[G_OS_WRITE],
                                    &self->os_version);
    }
    if (plain != 1) {
        return plain < 0 ? -1 : 2;
    }
    PyObject *names = constant[G_NAMES];
    PyObject *arguments[7] = {logger, level, NULL, NULL, NULL, names, NULL};
    PyObject *targets = NULL, *created = NULL, *failed = Py_NewRef(Py_None);
    int verdict = -1;
    if (keep_direct(&self->direct, direct) < 0) {
        Py_DECREF(failed);
        return -1;
    }
    arguments[2] = kind != NULL ? Py_NewRef(kind) : PyObject_GetAttr(outcome, str_kind);
    arguments[3] = Py_NewRef(self->direct.values[0]);
    arguments[4] = Py_NewRef(self->direct.values[1]);
    arguments[6] = Py_NewRef(self->direct.values[2]);
    /* the plan's targets when it holds, each with the lock and formatter the plan read of it
     * (held here: code run for one handler may change the plan), else direct_targets' list */
    Planned planned[PLAN_HANDLERS];
    Py_ssize_t count = 0;
    int checked = arguments[2] == NULL ? -1
        : !names_and_methods("direct_targets", names, arguments[6]) ? -1
        : direct_check(logger, arguments);
    if (checked == 2) {
        for (int index = 0; index < plan.handlers; index++) {
            const PlanHandler *kept = &plan.handler[index];
            if (kept->target) {
                planned[count].watch = kept->watch;
                planned[count].lock = Py_NewRef(kept->lock);
                planned[count].formatter = Py_NewRef(kept->formatter);
                Py_INCREF(kept->watch.object);
                count++;
            }
        }
    }
    else if (checked >= 0) {
        targets = direct_walk(arguments, checked);
        if (targets == NULL) {
            goto done;
        }
        if (targets == Py_None) {
            verdict = 2;
            goto done;
        }
        count = PyList_GET_SIZE(targets);
    }
    else {
        goto done;
    }
    /* time.time() looked up at each record, as LogRecord does (clock patching) */
    uint64_t version = module_version(constant[G_TIME]);
    if (version == 0 || version != self->time_version) {  /* time.time looked up again */
        PyObject *dict = version == 0 ? NULL : PyModule_GetDict(constant[G_TIME]);
        PyObject *found = dict == NULL ? NULL : PyDict_GetItemWithError(dict, str_time);
        self->time_version = found != NULL ? version : 0;
        self->kept_time = found;  /* a value of that dict, while it has that version */
        if (PyErr_Occurred()) {
            goto done;
        }
    }
    created = self->time_version != 0 ? PyObject_CallNoArgs(self->kept_time)
        : PyObject_CallMethodNoArgs(constant[G_TIME], str_time);
    PyObject *write_whole = constant[G_WRITE_WHOLE];
    if (created == NULL) {
        goto done;
    }
    for (Py_ssize_t index = 0; index < count; index++) {
        /* a planned handler's lock and formatter: the plan's while its dict is unchanged */
        const Planned *its = targets == NULL ? &planned[index] : NULL;
        PyObject *handler = its != NULL ? its->watch.object : PyList_GET_ITEM(targets, index);
        int held = its != NULL && watch_holds(&its->watch, handler);
        PyObject *lock = held ? Py_NewRef(its->lock) : PyObject_GetAttr(handler, str_lock);
        PyObject *exit = NULL;
        if (lock == NULL || enter_lock(&self->lock, lock, &exit) < 0) {
            Py_XDECREF(lock);
            goto done;
        }
        /* (a lock of another class than the kept one ran Python code: checked again) */
        held = held && (exit == NULL || watch_holds(&its->watch, handler));
        PyObject *formatter = held ? Py_NewRef(its->formatter)
            : PyObject_GetAttr(handler, str_formatter);
        PyObject *line = NULL;
        if (formatter != NULL) {
            PyObject *append_arguments[5] = {handler, formatter, outcome, created, write_whole};
            line = append_line(NULL, append_arguments, 5);
            Py_DECREF(formatter);
        }
        if (line == NULL && PyErr_ExceptionMatches(PyExc_Exception)) {
            /* the failure as the line: finish_accelerated raises it where handleError sees it */
            line = fetched_exception();
        }
        if (line != NULL && line != Py_True) {
            PyObject *finish_arguments[8] = {handler, outcome, created, line, failed, logger,
                                             level, make_record};
            Py_SETREF(failed, PyObject_Vectorcall(self->finish, finish_arguments, 8, NULL));
            Py_SETREF(line, failed == NULL ? NULL : Py_NewRef(Py_True));
        }
        if (line == NULL) {  /* an exception to pass on: the lock left as `with` leaves it */
            int suppressed = leave_raising(&self->lock, lock, exit);
            Py_DECREF(lock);
            if (suppressed == 1) {
                continue;  /* by the lock's __exit__: on to the next handler, as `with` goes */
            }
            goto done;
        }
        Py_DECREF(line);
        int left = leave(&self->lock, lock, exit);
        Py_DECREF(lock);
        if (left < 0) {
            goto done;
        }
    }
    if (failed == Py_None) {
        verdict = 0;
    }
    else {
        PyObject *values = PyObject_GetAttr(failed, str_dict);
        verdict = values == NULL ? -1 : PySequence_Contains(values, constant[G_WRITE_FAILED]);
        Py_XDECREF(values);
    }
done:
    for (int at = 2; at < 7; at++) {
        if (at != 5) {
            Py_XDECREF(arguments[at]);
        }
    }
    for (Py_ssize_t index = 0; targets == NULL && index < count; index++) {
        Py_DECREF(planned[index].watch.object);
        Py_DECREF(planned[index].lock);
        Py_DECREF(planned[index].formatter);
    }
    Py_XDECREF(targets);
    Py_XDECREF(created);
    Py_XDECREF(failed);
    return verdict;
}

static PyObject *
emitter_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Emitter *self = (Emitter *)callable;
    int verdict = 2;
    if (PyVectorcall_NARGS(nargsf) == 4 && kwnames == NULL) {
        verdict = emit_here(self, args[0], args[1], args[2], NULL, args[3]);
    }
    if (verdict == 2) {
        return PyObject_Vectorcall(self->python, args, nargsf, kwnames);
    }
    return verdict < 0 ? NULL : PyBool_FromLong(verdict);
}

static PyObject *
emitter_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *python, *finish, *speedups;
    static char *keywords[] = {"python", "finish", "speedups", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO!:Emitter", keywords, &python, &finish,
                                     &PyDict_Type, &speedups)) {
        return NULL;
    }
    Emitter *self = (Emitter *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->python = Py_NewRef(python);
    self->finish = Py_NewRef(finish);
    self->speedups = Py_NewRef(speedups);
    self->vectorcall = emitter_vectorcall;
    PyObject *names[G_COUNT] = {str_template_record, str_logging, str_log_record, str_os,
                                str_os_write, str_accelerated_names, str_time, str_write_whole,
                                str_write_failed};
    for (int at = 0; at < G_COUNT; at++) {
        PyObject *value = speedups_global(self->speedups, names[at]);
        if (value == NULL) {
            Py_DECREF(self);
            return NULL;
        }
        self->constant[at] = Py_NewRef(value);
    }
    return (PyObject *)self;
}

static int
emitter_traverse(Emitter *self, visitproc visit, void *arg)
{
    Py_VISIT(self->python);
    Py_VISIT(self->finish);
    Py_VISIT(self->speedups);
    for (int at = 0; at < G_COUNT; at++) {
        Py_VISIT(self->constant[at]);
    }
    int visited = kept_lock_traverse(&self->lock, visit, arg);
    return visited != 0 ? visited : kept_direct_traverse(&self->direct, visit, arg);
}

static int
emitter_clear(Emitter *self)
{
    Py_CLEAR(self->python);
    Py_CLEAR(self->finish);
    Py_CLEAR(self->speedups);
    for (int at = 0; at < G_COUNT; at++) {
        Py_CLEAR(self->constant[at]);
    }
    kept_lock_clear(&self->lock);
    kept_direct_clear(&self->direct);
    return 0;
}

static void
emitter_dealloc(Emitter *self)
{
    PyObject_GC_UnTrack(self);
    emitter_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
emitter_wrapped(Emitter *self, void *unused)
{
    return Py_NewRef(self->python);
}

static PyGetSetDef emitter_getset[] = {
    {"__wrapped__", (getter)emitter_wrapped, NULL, "the emitter written in Python", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(emitter_doc,
"Emitter(python, finish, speedups)\n--\n\n"
"``emitter(logger, level, outcome, make_record)``: what ``python``\n"
"(``speedups.emit_accelerated``) writes and answers, done in C for its usual case (its\n"
"checks passed, ``os.write`` the os module's, direct_targets giving the handlers): each\n"
"handler's lock entered and left as ``with`` does, its line made and written by\n"
"append_line, or, when append_line did not write it or raised an Exception, handed to\n"
"``finish`` (``speedups.finish_accelerated``) under the lock. Every other call is\n"
"``python``'s. ``speedups``: that module's globals; ``_direct`` is read at each record,\n"
"the module's constants (template_record, the logging, os and time modules, _LogRecord,\n"
"_OS_WRITE, _ACCELERATED_NAMES, write_whole, WRITE_FAILED) when it is made.");

static PyTypeObject EmitterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mta_logging._accel.Emitter",
    .tp_basicsize = sizeof(Emitter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = emitter_doc,
    .tp_new = emitter_new,
    .tp_traverse = (traverseproc)emitter_traverse,
    .tp_clear = (inquiry)emitter_clear,
    .tp_dealloc = (destructor)emitter_dealloc,
    .tp_vectorcall_offset = offsetof(Emitter, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_getset = emitter_getset,
};

/* == Entry: AccountingLogger.delivered and .deferred entered in C ========================= */
/* the fields of an Outcome's __dict__ as logger._build makes it (logger._BUILT), in order */
enum { F_KIND, F_RCPT, F_TIME_QUEUED, F_SRC_MTA, F_SRC_IP, F_DEST_IP, F_VMTA, F_JOB_ID,
       F_DSN_STATUS, F_DSN_MSG, F_DELAY, F_BOUNCE_CAT, F_HEADERS, F_EXTRA, F_BUILT };

typedef struct {
    PyObject_HEAD
    PyObject *python;         /* the method written in Python: what every other call gets */
    PyObject *kind;           /* the Kind it records */
    PyObject *owner;          /* AccountingLogger */
    PyObject *record;         /* AccountingLogger.record as defined */
    PyObject *builder;        /* AccountingLogger._outcome as installed */
    PyObject *fields;         /* logger._BUILT, interned: the keywords are fields[2:] */
    PyObject *template;       /* dict.fromkeys(fields) */
    PyObject *outcome_class;  /* Outcome */
    PyObject *is_enabled_for; /* logging.Logger.isEnabledFor */
    Seen record_seen, builder_seen;  /* the class's record and _outcome last checked */
    /* record_outcome's reads, kept while nothing they rest on changed (see Watch): the
     * AccountingLogger's logger, _emit and _make_record, the kind's level, the logger's
     * _cache (its disabled False, its isEnabledFor Logger's); pointers compared, never
     * followed before the watches hold */
    int kept;
    Slots self_slots;  /* the AccountingLogger's logger, _emit, _make_record */
    Watch logger_watch, kind_watch;
    PyObject *kept_logger, *kept_level, *kept_cache;
    vectorcallfunc vectorcall;
} Entry;

/* Keep record_outcome's reads of `logger_self` (see Entry.kept) if each is such an attribute
 * that a Watch can keep; else leave nothing kept. */
static void
keep_reads(Entry *self, PyObject *logger_self, PyObject *kind)
{
    self->kept = 0;
    PyObject *names[] = {str_logger, str_emit, str_make_record, NULL};
    PyObject *logger = NULL, *logger_dict = NULL, *kind_dict = NULL, *value;
    int plain = slots_find(&self->self_slots, logger_self, names)
        && (logger = PyMember_GetOne((const char *)logger_self,
                                     self->self_slots.member[0])) != NULL;
    self->kept_logger = logger;  /* compared only: the slot's value is read at each record */
    Py_XDECREF(logger);
    plain = plain && (logger_dict = generic_dict(self->kept_logger)) != NULL
        && watch_now(&self->logger_watch, self->kept_logger, logger_dict)
        && plain_read(self->kept_logger, logger_dict, str_disabled, &value) && value == Py_False
        && plain_read(self->kept_logger, logger_dict, str_cache, &self->kept_cache)
        && PyDict_CheckExact(self->kept_cache)
        /* Logger's own isEnabledFor: from the class, not set on the logger */
        && PyDict_Contains(logger_dict, str_is_enabled_for) == 0
        && _PyType_Lookup(Py_TYPE(self->kept_logger), str_is_enabled_for)
            == self->is_enabled_for
        && (kind_dict = generic_dict(kind)) != NULL
        && watch_now(&self->kind_watch, kind, kind_dict)
        && plain_read(kind, kind_dict, str_level, &self->kept_level);
    Py_XDECREF(logger_dict);
    Py_XDECREF(kind_dict);
    PyErr_Clear();
    self->kept = plain;
}

/* 1 if `type.<name>` is `expected`, looked up again only when the class changed since it
 * last was (see Seen); 0 if not, -1 with an exception set. */
static int
class_attribute_seen(Seen *seen, PyObject *type, PyObject *name, PyObject *expected)
{
    if (seen_unchanged(seen, type, name, expected)) {
        return 1;
    }
    int same = class_attribute_is(type, name, expected);
    if (same == 1) {
        seen_now(seen, type, name, expected);
    }
    return same;
}

/* 1 if logger.isEnabledFor(level) is true, 0 if not, -1 with an exception set. Logger's own
 * (bound to this logger) is done here as CPython 3.11 does it: False if disabled, else its
 * _cache's answer for the level; the method is called for any other and on a cache miss. */
static int
logger_enabled(Entry *self, PyObject *logger, PyObject *level)
{
    PyObject *method = PyObject_GetAttr(logger, str_is_enabled_for);
    if (method == NULL) {
        return -1;
    }
    PyObject *answer = NULL;
    if (PyMethod_Check(method) && PyMethod_GET_FUNCTION(method) == self->is_enabled_for
            && PyMethod_GET_SELF(method) == logger) {
        int disabled = true_attribute(logger, str_disabled);
        if (disabled != 0) {
            Py_DECREF(method);
            return disabled < 0 ? -1 : 0;
        }
        PyObject *cache = PyObject_GetAttr(logger, str_cache);
        if (cache == NULL) {
            Py_DECREF(method);
            return -1;
        }
        if (PyDict_CheckExact(cache)) {
            answer = Py_XNewRef(PyDict_GetItemWithError(cache, level));
        }
        Py_DECREF(cache);
        if (answer == NULL && PyErr_Occurred()) {
            Py_DECREF(method);
            return -1;
        }
    }
    if (answer == NULL) {
        answer = PyObject_CallOneArg(method, level);
    }
    Py_DECREF(method);
    int truth = answer == NULL ? -1 : PyObject_IsTrue(answer);
    Py_XDECREF(answer);
    return truth;
}

/* The Outcome of `given` (the F_BUILT values, borrowed) made as logger._build makes it:
 * object.__new__(Outcome) given the dict of the fields, in order, as its __dict__, headers
 * and extra None made empty dicts. */
static PyObject *
new_outcome(Entry *self, PyObject *const *given)
{
    PyObject *values = PyDict_Copy(self->template);
    if (values == NULL) {
        return NULL;
    }
    for (Py_ssize_t field = 0; field < F_BUILT; field++) {
        PyObject *value = given[field], *empty = NULL;
        if ((field == F_HEADERS || field == F_EXTRA) && value == Py_None) {
            value = empty = PyDict_New();
        }
        else if (value == Py_None) {
            continue;  /* the template's value */
        }
        int failed = value == NULL
            || PyDict_SetItem(values, PyTuple_GET_ITEM(self->fields, field), value) < 0;
        Py_XDECREF(empty);
        if (failed) {
            Py_DECREF(values);
            return NULL;
        }
    }
    PyTypeObject *type = (PyTypeObject *)self->outcome_class;
    /* object.__new__(Outcome): no arguments, no abstract methods, so its tp_alloc */
    PyObject *outcome = type->tp_alloc(type, 0);
    if (outcome != NULL && PyObject_GenericSetDict(outcome, values, NULL) < 0) {
        Py_CLEAR(outcome);
    }
    Py_DECREF(values);
    return outcome;
}

/* What AccountingLogger.record(self, outcome) does, for the class's own record: emit the
 * outcome through self._emit when the logger is enabled for its level, then tell
 * on_write_error of a failed write. Returns a new reference to `outcome`, or NULL. */
static PyObject *
record_outcome(Entry *self, PyObject *logger_self, PyObject *outcome, PyObject *kind)
{
    PyObject *logger = NULL, *level = NULL, *emit = NULL, *make_record = NULL, *hook = NULL;
    PyObject *result = NULL;
    int kept = self->kept && slots_hold(&self->self_slots, logger_self);
    if (kept) {
        logger = PyMember_GetOne((const char *)logger_self, self->self_slots.member[0]);
        if (logger == NULL) {
            goto done;
        }
        kept = logger == self->kept_logger && watch_holds(&self->logger_watch, logger)
            && watch_holds(&self->kind_watch, kind);
    }
    int truth;
    if (kept) {  /* the reads kept (see Entry.kept), the logger enabled as logger_enabled has it */
        level = Py_NewRef(self->kept_level);
        PyObject *answer = PyDict_GetItemWithError(self->kept_cache, level);
        truth = answer != NULL ? PyObject_IsTrue(answer)
            : PyErr_Occurred() ? -1 : logger_enabled(self, logger, level);
    }
    else {
        Py_XSETREF(logger, PyObject_GetAttr(logger_self, str_logger));
        level = logger == NULL ? NULL : PyObject_GetAttr(kind, str_level);
        if (level == NULL) {
            goto done;
        }
        truth = logger_enabled(self, logger, level);
    }
    if (truth < 0) {
        goto done;
    }
    if (truth) {
        if (kept) {  /* the slots' values, read at each record */
            emit = PyMember_GetOne((const char *)logger_self, self->self_slots.member[1]);
            make_record = emit == NULL ? NULL
                : PyMember_GetOne((const char *)logger_self, self->self_slots.member[2]);
            if (make_record == NULL) {
                goto done;
            }
        }
        else {
            emit = PyObject_GetAttr(logger_self, str_emit);
            make_record = emit == NULL ? NULL : PyObject_GetAttr(logger_self, str_make_record);
            if (make_record == NULL) {
                goto done;
            }
            keep_reads(self, logger_self, kind);
        }
        /* an Emitter: its work done here, without the call */
        int in_c = Py_IS_TYPE(emit, &EmitterType);
        truth = in_c ? emit_here((Emitter *)emit, logger, level, outcome, kind, make_record)
            : 2;
        if (truth == 2) {
            PyObject *arguments[4] = {logger, level, outcome, make_record};
            PyObject *failed = PyObject_Vectorcall(in_c ? ((Emitter *)emit)->python : emit,
                                                   arguments, 4, NULL);
            truth = failed == NULL ? -1 : PyObject_IsTrue(failed);
            Py_XDECREF(failed);
        }
        if (truth < 0) {
            goto done;
        }
        if (truth) {
            hook = PyObject_GetAttr(logger_self, str_on_write_error);
            if (hook == NULL) {
                goto done;
            }
            if (hook != Py_None) {
                PyObject *told = PyObject_CallOneArg(hook, outcome);
                if (told == NULL) {
                    goto done;
                }
                Py_DECREF(told);
            }
        }
    }
    result = Py_NewRef(outcome);
done:
    Py_XDECREF(logger);
    Py_XDECREF(level);
    Py_XDECREF(emit);
    Py_XDECREF(make_record);
    Py_XDECREF(hook);
    return result;
}

static PyObject *
entry_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Entry *self = (Entry *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2) {
        goto python;
    }
    PyObject *given[F_BUILT];
    given[F_KIND] = self->kind;
    given[F_RCPT] = args[1];
    for (Py_ssize_t field = F_TIME_QUEUED; field < F_BUILT; field++) {
        given[field] = Py_None;
    }
    Py_ssize_t keywords = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t index = 0; index < keywords; index++) {
        /* the names of a call in code are interned, as the fields are: compared by identity
         * (any other name, a detail or one spelt at run time, goes to the Python method) */
        PyObject *name = PyTuple_GET_ITEM(kwnames, index);
        Py_ssize_t field = F_TIME_QUEUED;
        while (field < F_BUILT && PyTuple_GET_ITEM(self->fields, field) != name) {
            field++;
        }
        if (field == F_BUILT) {
            goto python;
        }
        given[field] = args[nargs + index];
    }
    PyObject *rcpt = given[F_RCPT], *time_queued = given[F_TIME_QUEUED];
    PyObject *delay = given[F_DELAY], *job_id = given[F_JOB_ID], *headers = given[F_HEADERS];
    /* the arguments logger._build takes as they are (build_outcome's test) */
    if (!(PyUnicode_CheckExact(rcpt) && PyUnicode_GET_LENGTH(rcpt) > 0)
            || !(time_queued == Py_None || PyFloat_CheckExact(time_queued))
            || !(delay == Py_None || PyFloat_CheckExact(delay) || PyLong_CheckExact(delay))
            || !(job_id == Py_None || PyUnicode_CheckExact(job_id))
            || !(headers == Py_None || PyDict_CheckExact(headers))) {
        goto python;
    }
    if (!PyObject_TypeCheck(args[0], (PyTypeObject *)self->owner)) {
        goto python;
    }
    /* a subclass's (or a patched) record or outcome builder: the Python method calls them */
    PyObject *type = (PyObject *)Py_TYPE(args[0]);
    int plain = class_attribute_seen(&self->record_seen, type, str_record, self->record);
    if (plain == 1) {
        plain = class_attribute_seen(&self->builder_seen, type, str_outcome_builder,
                                     self->builder);
    }
    if (plain < 0) {
        return NULL;
    }
    if (plain == 0) {
        goto python;
    }
    /* an instance with a __dict__ (of a subclass without __slots__) may hold a record or an
     * _outcome of its own (mock.patch.object sets one there), and a class's own
     * __getattribute__ may answer anything: the Python method looks them up */
    if (Py_TYPE(args[0])->tp_dictoffset != 0) {
        if (Py_TYPE(args[0])->tp_getattro != PyObject_GenericGetAttr) {
            goto python;
        }
        PyObject *values = PyObject_GenericGetDict(args[0], NULL);
        if (values == NULL) {
            return NULL;
        }
        int found = PyDict_Contains(values, str_record);
        if (found == 0) {
            found = PyDict_Contains(values, str_outcome_builder);
        }
        Py_DECREF(values);
        if (found < 0) {
            return NULL;
        }
        if (found) {
            goto python;
        }
    }
    PyObject *outcome = new_outcome(self, given);
    if (outcome == NULL) {
        return NULL;
    }
    /* its line made of `given` (see Fresh), headers and extra left out: new dicts in it */
    PyObject *values = PyObject_GenericGetDict(outcome, NULL);
    if (values == NULL) {
        Py_DECREF(outcome);
        return NULL;
    }
    Fresh before = fresh;
    fresh = (Fresh){outcome, ((PyDictObject *)values)->ma_version_tag, given, self->fields,
                    F_HEADERS};
    Py_DECREF(values);
    PyObject *result = record_outcome(self, args[0], outcome, self->kind);
    fresh = before;
    Py_DECREF(outcome);
    return result;
python:
    return PyObject_Vectorcall(self->python, args, nargsf, kwnames);
}

/* __get__ of Entry, Init and Handle: a method bound to the instance, as a function's is */
static PyObject *
method_get(PyObject *self, PyObject *instance, PyObject *owner)
{
    if (instance == NULL || instance == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, instance);
}

static PyObject *
entry_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *python, *kind, *owner, *record, *builder, *fields, *outcome_class;
    PyObject *is_enabled_for;
    static char *keywords[] = {"python", "kind", "owner", "record", "builder", "fields",
                               "outcome_class", "is_enabled_for", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO!OOO!O!O:Entry", keywords, &python,
                                     &kind, &PyType_Type, &owner, &record, &builder,
                                     &PyTuple_Type, &fields, &PyType_Type, &outcome_class,
                                     &is_enabled_for)) {
        return NULL;
    }
    if (PyTuple_GET_SIZE(fields) != F_BUILT) {
        PyErr_Format(PyExc_TypeError, "Entry: %d fields, not %zd", F_BUILT,
                     PyTuple_GET_SIZE(fields));
        return NULL;
    }
    for (Py_ssize_t index = 0; index < F_BUILT; index++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(fields, index))) {
            PyErr_SetString(PyExc_TypeError, "Entry: the fields are names (str)");
            return NULL;
        }
    }
    PyObject *interned = PyTuple_New(F_BUILT), *template = PyDict_New();
    if (interned == NULL || template == NULL) {
        goto failed;
    }
    for (Py_ssize_t index = 0; index < F_BUILT; index++) {
        PyObject *name = Py_NewRef(PyTuple_GET_ITEM(fields, index));
        PyUnicode_InternInPlace(&name);
        PyTuple_SET_ITEM(interned, index, name);
        if (PyDict_SetItem(template, name, Py_None) < 0) {
            goto failed;
        }
    }
    Entry *self = (Entry *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto failed;
    }
    self->python = Py_NewRef(python);
    self->kind = Py_NewRef(kind);
    self->owner = Py_NewRef(owner);
    self->record = Py_NewRef(record);
    self->builder = Py_NewRef(builder);
    self->fields = interned;
    self->template = template;
    self->outcome_class = Py_NewRef(outcome_class);
    self->is_enabled_for = Py_NewRef(is_enabled_for);
    self->vectorcall = entry_vectorcall;
    return (PyObject *)self;
failed:
    Py_XDECREF(interned);
    Py_XDECREF(template);
    return NULL;
}

static int
entry_traverse(Entry *self, visitproc visit, void *arg)
{
    Py_VISIT(self->python);
    Py_VISIT(self->kind);
    Py_VISIT(self->owner);
    Py_VISIT(self->record);
    Py_VISIT(self->builder);
    Py_VISIT(self->template);
    Py_VISIT(self->outcome_class);
    Py_VISIT(self->is_enabled_for);
    Seen *seen[2] = {&self->record_seen, &self->builder_seen};
    for (int at = 0; at < 2; at++) {
        Py_VISIT(seen[at]->type);
        Py_VISIT(seen[at]->names);
        Py_VISIT(seen[at]->against);
    }
    return 0;
}

static int
entry_clear(Entry *self)
{
    Py_CLEAR(self->python);
    Py_CLEAR(self->kind);
    Py_CLEAR(self->owner);
    Py_CLEAR(self->record);
    Py_CLEAR(self->builder);
    Py_CLEAR(self->fields);
    Py_CLEAR(self->template);
    Py_CLEAR(self->outcome_class);
    Py_CLEAR(self->is_enabled_for);
    Seen *seen[2] = {&self->record_seen, &self->builder_seen};
    for (int at = 0; at < 2; at++) {
        Py_CLEAR(seen[at]->type);
        Py_CLEAR(seen[at]->names);
        Py_CLEAR(seen[at]->against);
    }
    return 0;
}

static void
entry_dealloc(Entry *self)
{
    PyObject_GC_UnTrack(self);
    entry_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* What Entry and Init begin with: the function written in Python that they stand in for, whose
 * __wrapped__, __doc__, __name__... they show (wrapping_getset's getters). */
typedef struct {
    PyObject_HEAD
    PyObject *python;
} Wrapping;

/* __doc__, __name__, __qualname__, __module__...: the Python function's (closure: the name) */
static PyObject *
wrapping_python_attribute(Wrapping *self, void *name)
{
    return PyObject_GetAttrString(self->python, (const char *)name);
}

static PyObject *
wrapping_wrapped(Wrapping *self, void *unused)
{
    return Py_NewRef(self->python);
}

/* the getters of Entry and Handle: those of the method written in Python they stand in for */
static PyGetSetDef method_getset[] = {
    {"__wrapped__", (getter)wrapping_wrapped, NULL, "the method written in Python", NULL},
    {"__doc__", (getter)wrapping_python_attribute, NULL, NULL, "__doc__"},
    {"__name__", (getter)wrapping_python_attribute, NULL, NULL, "__name__"},
    {"__qualname__", (getter)wrapping_python_attribute, NULL, NULL, "__qualname__"},
    {"__module__", (getter)wrapping_python_attribute, NULL, NULL, "__module__"},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EntryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mta_logging._accel.Entry",
    .tp_basicsize = sizeof(Entry),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
        | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = PyDoc_STR(
        "Entry(python, kind, owner, record, builder, fields, outcome_class, is_enabled_for)\n"
        "--\n\n"
        "A method of ``owner`` (AccountingLogger) that records an outcome of ``kind`` as the\n"
        "method ``python`` (its delivered or deferred) does: for a call with the recipient\n"
        "and keywords among ``fields`` (logger._BUILT) whose values logger._build takes as\n"
        "they are, on an instance whose class's ``record`` and ``_outcome`` are ``record``\n"
        "and ``builder``, it makes the Outcome as _build makes it and does what ``record``\n"
        "does with it, in C (an Emitter's work done without calling it; Logger's own\n"
        "``is_enabled_for`` read in C); every other call is ``python``'s (its errors, its\n"
        "texts)."),
    .tp_new = entry_new,
    .tp_traverse = (traverseproc)entry_traverse,
    .tp_clear = (inquiry)entry_clear,
    .tp_dealloc = (destructor)entry_dealloc,
    .tp_vectorcall_offset = offsetof(Entry, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = method_get,
    .tp_getset = method_getset,
};

/* == Outcome.__init__ (speedups.one_step_init) in C ====================================== */

enum { INIT_REQUIRED, INIT_DEFAULT, INIT_NEW_DICT, INIT_OPTIONAL };
#define INIT_FIELDS 64

typedef struct {
    PyObject_HEAD
    PyObject *python;         /* the __init__ written in Python: every other call */
    PyObject *fields;         /* tuple of the field names (interned), in order */
    PyObject *defaults;       /* tuple: each field's default (INIT_DEFAULT), else None */
    PyObject *template;       /* dict: the fields that are not optional, in order, None */
    PyObject *outcome_class;
    unsigned char kind[INIT_FIELDS];
    Py_ssize_t count;
    vectorcallfunc vectorcall;
} Init;

static PyObject *
init_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Init *self = (Init *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1 || nargs - 1 > self->count
            || !PyObject_TypeCheck(args[0], (PyTypeObject *)self->outcome_class)) {
        goto python;
    }
    PyObject *given[INIT_FIELDS] = {NULL};
    for (Py_ssize_t at = 1; at < nargs; at++) {
        given[at - 1] = args[at];
    }
    Py_ssize_t keywords = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t index = 0; index < keywords; index++) {
        /* names spelt in code are interned, as the fields are: compared by identity (any
         * other, a name made at run time or none of the fields, goes to the Python one) */
        PyObject *name = PyTuple_GET_ITEM(kwnames, index);
        Py_ssize_t field = 0;
        while (field < self->count && PyTuple_GET_ITEM(self->fields, field) != name) {
            field++;
        }
        if (field == self->count || given[field] != NULL) {
            goto python;  /* its TypeError: unexpected, or given twice */
        }
        given[field] = args[nargs + index];
    }
    for (Py_ssize_t field = 0; field < self->count; field++) {
        if (given[field] == NULL && self->kind[field] == INIT_REQUIRED) {
            goto python;  /* its TypeError: missing */
        }
    }
    PyObject *values = PyDict_Copy(self->template);
    if (values == NULL) {
        return NULL;
    }
    for (Py_ssize_t field = 0; field < self->count; field++) {
        PyObject *value = given[field], *made = NULL;
        int kind = self->kind[field];
        if (kind == INIT_NEW_DICT && value == PyTuple_GET_ITEM(self->defaults, field)) {
            value = NULL;  /* the signature's <factory> passed back: a new dict, as Python */
        }
        if (value == NULL) {
            if (kind == INIT_NEW_DICT) {
                value = made = PyDict_New();
                if (value == NULL) {
                    Py_DECREF(values);
                    return NULL;
                }
            }
            else if (kind == INIT_DEFAULT) {
                value = PyTuple_GET_ITEM(self->defaults, field);
                if (value == Py_None) {
                    continue;  /* the template's */
                }
            }
            else {
                continue;  /* optional, not given: the class attribute stands for it */
            }
        }
        else if (kind == INIT_OPTIONAL && value == Py_None) {
            continue;
        }
        int failed = PyDict_SetItem(values, PyTuple_GET_ITEM(self->fields, field), value) < 0;
        Py_XDECREF(made);
        if (failed) {
            Py_DECREF(values);
            return NULL;
        }
    }
    int failed = PyObject_GenericSetDict(args[0], values, NULL) < 0;
    Py_DECREF(values);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
python:
    return PyObject_Vectorcall(self->python, args, nargsf, kwnames);
}

static PyObject *
init_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *python, *fields, *defaults, *kinds, *outcome_class;
    static char *keywords[] = {"python", "fields", "defaults", "kinds", "outcome_class", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!O!O!O!:Init", keywords, &python,
                                     &PyTuple_Type, &fields, &PyTuple_Type, &defaults,
                                     &PyBytes_Type, &kinds, &PyType_Type, &outcome_class)) {
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(fields);
    if (count > INIT_FIELDS || PyTuple_GET_SIZE(defaults) != count
            || PyBytes_GET_SIZE(kinds) != count) {
        PyErr_Format(PyExc_ValueError, "Init: at most %d fields, a default and a kind each",
                     INIT_FIELDS);
        return NULL;
    }
    PyObject *interned = PyTuple_New(count), *template = PyDict_New();
    if (interned == NULL || template == NULL) {
        goto failed;
    }
    for (Py_ssize_t field = 0; field < count; field++) {
        PyObject *name = PyTuple_GET_ITEM(fields, field);
        unsigned char kind = (unsigned char)PyBytes_AS_STRING(kinds)[field];
        if (!PyUnicode_CheckExact(name) || kind > INIT_OPTIONAL) {
            PyErr_SetString(PyExc_ValueError, "Init: the fields are names (str), kinds 0 to 3");
            goto failed;
        }
        Py_INCREF(name);
        PyUnicode_InternInPlace(&name);
        PyTuple_SET_ITEM(interned, field, name);
        if (kind != INIT_OPTIONAL && PyDict_SetItem(template, name, Py_None) < 0) {
            goto failed;
        }
    }
    Init *self = (Init *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto failed;
    }
    self->python = Py_NewRef(python);
    self->fields = interned;
    self->defaults = Py_NewRef(defaults);
    self->template = template;
    self->outcome_class = Py_NewRef(outcome_class);
    self->count = count;
    memcpy(self->kind, PyBytes_AS_STRING(kinds), (size_t)count);
    self->vectorcall = init_vectorcall;
    return (PyObject *)self;
failed:
    Py_XDECREF(interned);
    Py_XDECREF(template);
    return NULL;
}

static int
init_traverse(Init *self, visitproc visit, void *arg)
{
    Py_VISIT(self->python);
    Py_VISIT(self->defaults);
    Py_VISIT(self->template);
    Py_VISIT(self->outcome_class);
    return 0;
}

static int
init_clear(Init *self)
{
    Py_CLEAR(self->python);
    Py_CLEAR(self->fields);
    Py_CLEAR(self->defaults);
    Py_CLEAR(self->template);
    Py_CLEAR(self->outcome_class);
    return 0;
}

static void
init_dealloc(Init *self)
{
    PyObject_GC_UnTrack(self);
    init_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}


static PyObject *
init_reduce(Init *self, PyObject *unused)
{
    PyObject *name = PyObject_GetAttrString(self->python, "__name__");
    if (name == NULL) {
        return NULL;
    }
    PyObject *getattr = PyDict_GetItemString(PyEval_GetBuiltins(), "getattr");
    PyObject *result = getattr == NULL ? NULL
        : Py_BuildValue("O(OO)", getattr, self->outcome_class, name);
    Py_DECREF(name);
    return result;
}

static PyMethodDef init_methods[] = {
    {"__reduce__", (PyCFunction)init_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef init_getset[] = {
    {"__annotations__", (getter)wrapping_python_attribute, NULL, NULL, "__annotations__"},
    {"__wrapped__", (getter)wrapping_wrapped, NULL, "the __init__ written in Python", NULL},
    {"__doc__", (getter)wrapping_python_attribute, NULL, NULL, "__doc__"},
    {"__name__", (getter)wrapping_python_attribute, NULL, NULL, "__name__"},
    {"__qualname__", (getter)wrapping_python_attribute, NULL, NULL, "__qualname__"},
    {"__module__", (getter)wrapping_python_attribute, NULL, NULL, "__module__"},
    {"__defaults__", (getter)wrapping_python_attribute, NULL, NULL, "__defaults__"},
    {"__kwdefaults__", (getter)wrapping_python_attribute, NULL, NULL, "__kwdefaults__"},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject InitType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mta_logging._accel.Init",
    .tp_basicsize = sizeof(Init),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
        | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = PyDoc_STR(
        "Init(python, fields, defaults, kinds, outcome_class)\n--\n\n"
        "The ``__init__`` of ``outcome_class`` that ``python`` (speedups.one_step_init's) is,\n"
        "in C: for a call with at most one argument per field, the keywords among ``fields``\n"
        "(compared by identity: names spelt in code), every required field given and an\n"
        "instance of the class, it sets the instance's ``__dict__`` to the dict ``python``\n"
        "makes: the fields not optional in order (``kinds``: 0 required, 1 ``defaults``' value,\n"
        "2 a new dict), then the optional ones (3) given another value than None, in order.\n"
        "Every other call is ``python``'s (its errors, its texts)."),
    .tp_new = init_new,
    .tp_traverse = (traverseproc)init_traverse,
    .tp_clear = (inquiry)init_clear,
    .tp_dealloc = (destructor)init_dealloc,
    .tp_vectorcall_offset = offsetof(Init, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = method_get,
    .tp_getset = init_getset,
    .tp_methods = init_methods,
};

/* == An Outcome made in C: the class called without the type's generic call ============== */
/* Calling a class with keywords makes a dict of them (type_call), which slot_tp_init turns back
 * into the arguments of __init__: for an Outcome more than half the cost of making it. A class
 * whose tp_vectorcall is construct_vectorcall (construct_in_c) is called here: when its
 * __init__ is the Init made for it and its __new__ object's (what type_call would call: object
 * __new__ makes the instance, PyType_GenericNew's way, and __init__ is called with it), the
 * instance is made and the Init called with the arguments as they came; any other class
 * (a subclass), or one whose __init__ or __new__ was set since, is called as the type calls
 * it. */

/* A vectorcall's arguments as a call with a tuple and a dict takes them (*keywords NULL for
 * no keywords): 0, or -1 with an exception set (both NULL). */
static int
tuple_and_dict(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
               PyObject **positional, PyObject **keywords)
{
    *keywords = NULL;
    *positional = PyTuple_New(nargs);
    if (*positional == NULL) {
        return -1;
    }
    for (Py_ssize_t at = 0; at < nargs; at++) {
        PyTuple_SET_ITEM(*positional, at, Py_NewRef(args[at]));
    }
    Py_ssize_t count = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (count > 0 && (*keywords = PyDict_New()) == NULL) {
        Py_CLEAR(*positional);
        return -1;
    }
    for (Py_ssize_t at = 0; at < count; at++) {
        if (PyDict_SetItem(*keywords, PyTuple_GET_ITEM(kwnames, at), args[nargs + at]) < 0) {
            Py_CLEAR(*positional);
            Py_CLEAR(*keywords);
            return -1;
        }
    }
    return 0;
}

/* type_call(type, args, kwargs) for a vectorcall's arguments */
static PyObject *
type_call_of(PyObject *type, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *positional, *keywords;
    if (tuple_and_dict(args, nargs, kwnames, &positional, &keywords) < 0) {
        return NULL;
    }
    PyObject *made = PyType_Type.tp_call(type, positional, keywords);
    Py_DECREF(positional);
    Py_XDECREF(keywords);
    return made;
}

#define CONSTRUCT_STACK (INIT_FIELDS + 1)

/* The class's __init__ if it is an Init made for that class (borrowed), else NULL. */
static PyObject *
init_made_for(PyTypeObject *type)
{
    PyObject *init = _PyType_Lookup(type, str_init);
    return init != NULL && Py_IS_TYPE(init, &InitType)
        && ((Init *)init)->outcome_class == (PyObject *)type ? init : NULL;
}

static PyObject *
construct_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                     PyObject *kwnames)
{
    PyTypeObject *type = (PyTypeObject *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t given = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    PyObject *init = init_made_for(type);
    if (init == NULL || type->tp_new != PyBaseObject_Type.tp_new
            || PyType_HasFeature(type, Py_TPFLAGS_IS_ABSTRACT) || given >= CONSTRUCT_STACK) {
        return type_call_of(callable, args, nargs, kwnames);
    }
    PyObject *made = PyType_GenericNew(type, NULL, NULL);
    if (made == NULL) {
        return NULL;
    }
    /* __init__ looked up again, as type_call looks it up after __new__: making the instance
     * may have run code (a collection, finalizers) that set another one, and freed this */
    init = init_made_for(type);
    PyObject *done;
    if (init != NULL) {
        Py_INCREF(init);  /* held through the call: the call may set the class's __init__ */
        PyObject *stack[CONSTRUCT_STACK];
        stack[0] = made;
        memcpy(stack + 1, args, (size_t)given * sizeof(PyObject *));
        done = init_vectorcall(init, stack, (size_t)(nargs + 1), kwnames);
        Py_DECREF(init);
        if (done != NULL && done != Py_None) {
            PyErr_Format(PyExc_TypeError, "__init__() should return None, not '%.200s'",
                         Py_TYPE(done)->tp_name);
            Py_CLEAR(done);
        }
    }
    else {  /* the class's tp_init (slot_tp_init: its __init__ now) given what type_call gives */
        PyObject *positional, *keywords;
        int failed = tuple_and_dict(args, nargs, kwnames, &positional, &keywords) < 0
            || type->tp_init(made, positional, keywords) < 0;
        Py_XDECREF(positional);
        Py_XDECREF(keywords);
        done = failed ? NULL : Py_NewRef(Py_None);
    }
    if (done == NULL) {
        Py_DECREF(made);
        return NULL;
    }
    Py_DECREF(done);
    return made;
}

PyDoc_STRVAR(construct_in_c_doc,
"construct_in_c(cls, /)\n--\n\n"
"Make calls of ``cls`` (a class whose ``__init__`` is an ``Init`` made for it) in C: the\n"
"instance made as ``object.__new__`` makes it and the Init called with the arguments as\n"
"they came, without the dict of keywords the type's generic call makes; while ``__init__``\n"
"is that Init and ``__new__`` object's (else, and for its subclasses, the class is called\n"
"as usual). For CPython 3.11, the only Python it is used on.");

static PyObject *
construct_in_c(PyObject *module, PyObject *cls)
{
    if (!PyType_Check(cls) || Py_TYPE(cls) != &PyType_Type) {
        PyErr_SetString(PyExc_TypeError, "construct_in_c: a class whose metaclass is type");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    if (init_made_for(type) == NULL) {
        PyErr_Format(PyExc_ValueError, "construct_in_c: %R.__init__ is not an Init made for it",
                     cls);
        return NULL;
    }
    type->tp_vectorcall = construct_vectorcall;
    Py_RETURN_NONE;
}

/* == Handle: AccountingFileHandler.handle (speedups.handle_routed) in C ================== */

/* the globals of speedups a Handle takes when it is made (_direct, ACCELERATOR and _OS_WRITE:
 * read at each record); those before H_CHECKED are checked to be the same (globals_hold) */
enum { H_FILTER, H_OS, H_NAMES, H_OUTCOME, H_WRITE_WHOLE, H_EMIT_IN_C, H_CHECKED = H_EMIT_IN_C + 1,
       H_ACCELERATOR = H_CHECKED, H_COUNT };

typedef struct {
    PyObject_HEAD
    PyObject *python;    /* speedups.handle_routed: every call this one does not take */
    PyObject *finish;    /* speedups.finish_routed: a record write_record did not write */
    PyObject *speedups;  /* the globals of speedups */
    PyObject *constant[H_COUNT];
    PyObject *write_record;  /* this module's write_record (handle_routed calls the module's) */
    /* speedups._OS_WRITE when os.write was last found to be it, and the version of the os
     * module's dict then (see module_attribute_is) */
    PyObject *kept_os_write;
    uint64_t os_version;
    uint64_t globals_version;  /* of the speedups dict when globals_hold last found them */
    KeptLock lock;
    KeptDirect direct;
    vectorcallfunc vectorcall;
} Handle;

/* 1 if record.outcome.kind is handler.kind; 0 if not, or if one of them lacks the attribute
 * (AttributeError: not an accounting record); -1 with another exception set. */
static int
of_the_handlers_kind(PyObject *handler, PyObject *record)
{
    PyObject *outcome = PyObject_GetAttr(record, str_outcome);
    PyObject *kind = outcome == NULL ? NULL : PyObject_GetAttr(outcome, str_kind);
    Py_XDECREF(outcome);
    PyObject *own = kind == NULL ? NULL : PyObject_GetAttr(handler, str_kind);
    if (own == NULL) {
        Py_XDECREF(kind);
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    int same = kind == own;
    Py_DECREF(kind);
    Py_DECREF(own);
    return same;
}

/* 1 if the globals of speedups that handle_routed and _emit_in_c read and this Handle took
 * when it was made (FILTER, os, _ACCELERATED_NAMES, Outcome, write_whole, _emit_in_c) and
 * finish_routed are still those; asked again only when the module's dict has changed since
 * they last were (PEP 509). 0 if one is not (handle_routed is called), -1 on an error. */
static int
globals_hold(Handle *self)
{
    uint64_t version = ((PyDictObject *)self->speedups)->ma_version_tag;
    if (version == self->globals_version) {
        return 1;
    }
    PyObject *names[H_CHECKED + 1] = {str_filter_global, str_os, str_accelerated_names,
                                      str_outcome_global, str_write_whole, str_emit_in_c,
                                      str_finish_routed};
    for (int at = 0; at <= H_CHECKED; at++) {
        PyObject *value = PyDict_GetItemWithError(self->speedups, names[at]);
        if (value != (at < H_CHECKED ? self->constant[at] : self->finish)) {
            return PyErr_Occurred() ? -1 : 0;
        }
    }
    self->globals_version = version;
    return 1;
}

/* What handle_routed does under the lock (the body of its `with`): ``handler.emit(record)``
 * when _direct or ACCELERATOR is None or os.write is not _OS_WRITE; else _emit_in_c's step:
 * ACCELERATOR.write_record, and what it did not write (None, the line it made, or the
 * Exception it or a read of what it needs raised) handed to finish. A new reference, or NULL
 * with an exception set. */
static PyObject *
routed_step(Handle *self, PyObject *handler, PyObject *record)
{
    PyObject *const *constant = self->constant;
    PyObject *direct = speedups_global(self->speedups, str_direct_global);
    PyObject *accelerator = direct == NULL ? NULL
        : speedups_global(self->speedups, str_accelerator);
    PyObject *os_write = accelerator == NULL ? NULL
        : speedups_global(self->speedups, str_os_write);
    if (os_write == NULL) {
        return NULL;
    }
    int plain = direct != Py_None && accelerator != Py_None;
    if (plain) {
        if (os_write != self->kept_os_write) {
            Py_XSETREF(self->kept_os_write, Py_NewRef(os_write));
            self->os_version = 0;
        }
        plain = module_attribute_is(constant[H_OS], str_write, os_write, &self->os_version);
        if (plain < 0) {
            return NULL;
        }
    }
    if (!plain) {
        return PyObject_CallMethodOneArg(handler, str_emit_name, record);
    }
    /* _emit_in_c: ACCELERATOR.write_record as it looks it up (one set on the module is
     * called), given _direct's classes and methods (held: a call of Python code may make
     * another _direct) */
    PyObject *written = NULL, *write = PyObject_GetAttr(accelerator, str_write_record);
    if (write != NULL && keep_direct(&self->direct, direct) == 0) {
        PyObject *kept[3];
        for (int at = 0; at < 3; at++) {
            kept[at] = Py_NewRef(self->direct.values[at]);
        }
        PyObject *write_arguments[8] = {handler, record, kept[0], kept[1], constant[H_NAMES],
                                        kept[2], constant[H_OUTCOME], constant[H_WRITE_WHOLE]};
        written = write == self->write_record ? write_record(NULL, write_arguments, 8)
            : PyObject_Vectorcall(write, write_arguments, 8, NULL);
        for (int at = 0; at < 3; at++) {
            Py_DECREF(kept[at]);
        }
    }
    Py_XDECREF(write);
    if (written == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return NULL;
        }
        written = fetched_exception();  /* finish raises it where handleError sees it */
    }
    if (written == Py_True) {
        return written;
    }
    PyObject *finish_arguments[3] = {handler, record, written};
    PyObject *finished = PyObject_Vectorcall(self->finish, finish_arguments, 3, NULL);
    Py_DECREF(written);
    return finished;
}

/* What handle_routed does with a record of the handler's kind: the filter chain asked when
 * there is one (filters, a filter set on the handler, its class's not the Filterer's), then
 * ``handler.emit(record)`` for a handler without a lock, or routed_step under the lock,
 * entered and left as `with` does. 1 (True), 0 (False: filtered out), or -1 with an
 * exception set. */
static int
handle_here(Handle *self, PyObject *handler, PyObject *record)
{
    int filtered = true_attribute(handler, str_filters);
    if (filtered == 0) {
        filtered = true_attribute(handler, str_filter_set);
    }
    if (filtered == 0) {
        int same = class_attribute_is((PyObject *)Py_TYPE(handler), str_filter,
                                      self->constant[H_FILTER]);
        filtered = same < 0 ? -1 : !same;
    }
    if (filtered < 0) {
        return -1;
    }
    if (filtered) {
        PyObject *kept = PyObject_CallMethodOneArg(handler, str_filter, record);
        int keep = kept == NULL ? -1 : PyObject_IsTrue(kept);
        Py_XDECREF(kept);
        if (keep <= 0) {
            return keep;
        }
    }
    PyObject *lock = PyObject_GetAttr(handler, str_lock);
    if (lock == NULL) {
        return -1;
    }
    if (lock == Py_None) {  /* a subclass that wants no lock (Handler.acquire allows it) */
        Py_DECREF(lock);
        PyObject *emitted = PyObject_CallMethodOneArg(handler, str_emit_name, record);
        Py_XDECREF(emitted);
        return emitted == NULL ? -1 : 1;
    }
    PyObject *exit;
    if (enter_lock(&self->lock, lock, &exit) < 0) {
        Py_DECREF(lock);
        return -1;
    }
    PyObject *done = routed_step(self, handler, record);
    int verdict;
    if (done == NULL) {
        verdict = leave_raising(&self->lock, lock, exit);  /* 1: suppressed by __exit__ */
    }
    else {
        Py_DECREF(done);
        verdict = leave(&self->lock, lock, exit) < 0 ? -1 : 1;
    }
    Py_DECREF(lock);
    return verdict;
}

static PyObject *
handle_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Handle *self = (Handle *)callable;
    int verdict = PyVectorcall_NARGS(nargsf) == 2 && kwnames == NULL ? globals_hold(self) : 0;
    if (verdict == 1) {
        verdict = of_the_handlers_kind(args[0], args[1]);
        if (verdict == 1) {
            verdict = handle_here(self, args[0], args[1]);
        }
        return verdict < 0 ? NULL : PyBool_FromLong(verdict);
    }
    if (verdict < 0) {
        return NULL;
    }
    return PyObject_Vectorcall(self->python, args, nargsf, kwnames);
}

static PyObject *
handle_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *python, *finish, *speedups;
    static char *keywords[] = {"python", "finish", "speedups", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO!:Handle", keywords, &python, &finish,
                                     &PyDict_Type, &speedups)) {
        return NULL;
    }
    PyObject *names[H_COUNT] = {str_filter_global, str_os, str_accelerated_names,
                                str_outcome_global, str_write_whole, str_emit_in_c,
                                str_accelerator};
    PyObject *constant[H_COUNT];
    for (int at = 0; at < H_COUNT; at++) {
        if ((constant[at] = speedups_global(speedups, names[at])) == NULL) {
            return NULL;
        }
    }
    PyObject *write = PyObject_GetAttr(constant[H_ACCELERATOR], str_write_record);
    Handle *self = write == NULL ? NULL : (Handle *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_XDECREF(write);
        return NULL;
    }
    self->write_record = write;
    self->python = Py_NewRef(python);
    self->finish = Py_NewRef(finish);
    self->speedups = Py_NewRef(speedups);
    for (int at = 0; at < H_COUNT; at++) {
        self->constant[at] = Py_NewRef(constant[at]);
    }
    self->vectorcall = handle_vectorcall;
    return (PyObject *)self;
}

static int
handle_traverse(Handle *self, visitproc visit, void *arg)
{
    Py_VISIT(self->python);
    Py_VISIT(self->finish);
    Py_VISIT(self->speedups);
    for (int at = 0; at < H_COUNT; at++) {
        Py_VISIT(self->constant[at]);
    }
    Py_VISIT(self->kept_os_write);
    Py_VISIT(self->write_record);
    int visited = kept_lock_traverse(&self->lock, visit, arg);
    return visited != 0 ? visited : kept_direct_traverse(&self->direct, visit, arg);
}

static int
handle_clear(Handle *self)
{
    Py_CLEAR(self->python);
    Py_CLEAR(self->finish);
    Py_CLEAR(self->speedups);
    for (int at = 0; at < H_COUNT; at++) {
        Py_CLEAR(self->constant[at]);
    }
    Py_CLEAR(self->kept_os_write);
    Py_CLEAR(self->write_record);
    kept_lock_clear(&self->lock);
    kept_direct_clear(&self->direct);
    return 0;
}

static void
handle_dealloc(Handle *self)
{
    PyObject_GC_UnTrack(self);
    handle_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(handle_doc,
"Handle(python, finish, speedups)\n--\n\n"
"``handler.handle(record)`` as ``python`` (``speedups.handle_routed``, with its\n"
"``_emit_in_c``) does it, in C: a record not of the handler's kind (``record.outcome.kind``\n"
"not ``handler.kind``, or one of them missing) turned away (False); for one of its kind the\n"
"filter chain asked when there is one (filters, ``filter`` set on the handler, its class's\n"
"not the Filterer's), ``emit`` called for a handler without a lock, else under the lock\n"
"(entered and left as ``with`` does): ``emit`` when ``_direct`` or ``ACCELERATOR`` is None\n"
"or ``os.write`` not ``_OS_WRITE``, else ``ACCELERATOR.write_record``, and what it did not\n"
"write (None, the line it made, or the Exception raised) handed to ``finish``\n"
"(``speedups.finish_routed``). ``speedups``: that module's globals; ``_direct``,\n"
"``ACCELERATOR`` and ``_OS_WRITE`` are read at each record, the others it reads (FILTER, os,\n"
"_ACCELERATED_NAMES, Outcome, write_whole, _emit_in_c) taken when it is made: while one of\n"
"them, or ``finish_routed``, is another object (checked when the module's dict changed),\n"
"every call is ``python``'s, as is a call with other arguments than (handler, record).");

static PyTypeObject HandleType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mta_logging._accel.Handle",
    .tp_basicsize = sizeof(Handle),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
        | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = handle_doc,
    .tp_new = handle_new,
    .tp_traverse = (traverseproc)handle_traverse,
    .tp_clear = (inquiry)handle_clear,
    .tp_dealloc = (destructor)handle_dealloc,
    .tp_vectorcall_offset = offsetof(Handle, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = method_get,
    .tp_getset = method_getset,  /* Entry's: those of the method written in Python */
};

/* == The bounce classifier's word scan (prefilter.PatternIndex.scan) ======================= */

PyDoc_STRVAR(or_words_doc,
"or_words(words, text, found, /)\n--\n\n"
"``found`` OR'ed with ``words[word]`` of each word of ``text`` lower-cased (what\n"
"``functools.reduce(operator.or_, map(words.__getitem__, text.lower().split()), found)``\n"
"gives), for an ASCII ``text``; ``words`` is a dict (its ``__missing__`` called for a word\n"
"it lacks) whose values are ints. A word whose value is 0 is not OR'ed. A non-ASCII\n"
"``text`` raises ValueError.");

static PyObject *
or_words(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "or_words expected 3 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *words = args[0], *text = args[1];
    if (!PyDict_Check(words) || !PyUnicode_Check(text) || !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "or_words expected a dict, a str and an int");
        return NULL;
    }
    if (PyUnicode_READY(text) < 0) {
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(text)) {
        PyErr_SetString(PyExc_ValueError, "or_words expected an ASCII text");
        return NULL;
    }
    const Py_UCS1 *data = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t length = PyUnicode_GET_LENGTH(text), at = 0;
    PyObject *found = Py_NewRef(args[2]);
    while (at < length) {
        /* str.split()'s white space, for ASCII: \t \n \v \f \r \x1c-\x1f and the space */
        while (at < length && Py_UNICODE_ISSPACE(data[at])) {
            at++;
        }
        Py_ssize_t start = at;
        while (at < length && !Py_UNICODE_ISSPACE(data[at])) {
            at++;
        }
        if (at == start) {
            break;
        }
        PyObject *word = PyUnicode_New(at - start, 127);
        if (word == NULL) {
            Py_DECREF(found);
            return NULL;
        }
        Py_UCS1 *lowered = PyUnicode_1BYTE_DATA(word);
        for (Py_ssize_t i = start; i < at; i++) {
            lowered[i - start] = (Py_UCS1)Py_TOLOWER(data[i]);
        }
        PyObject *hits = PyObject_GetItem(words, word);  /* __missing__ for a new word */
        Py_DECREF(word);
        if (hits == NULL) {
            Py_DECREF(found);
            return NULL;
        }
        int zero = PyObject_Not(hits);
        if (zero < 0) {
            Py_DECREF(hits);
            Py_DECREF(found);
            return NULL;
        }
        if (!zero) {
            PyObject *both = PyNumber_Or(found, hits);
            Py_DECREF(found);
            found = both;
        }
        Py_DECREF(hits);
        if (found == NULL) {
            return NULL;
        }
    }
    return found;
}

/* ---- durable files for the relay's spool (fsutil.create_synced, fsutil.fsync_directory) ----
 *
 * What fsutil.create_file and fsutil.fsync_directory do with os.open, os.write, os.fsync and
 * os.close, in one call that lets go of the GIL once: each of those os calls takes the GIL
 * back when it returns, and a spool thread that wants it back while the event loop holds it
 * costs futex calls and context switches on both sides (many of them per message). The
 * writes and fsyncs retried: _durable.h's, shared with relay/_spoolwriter.c. */

/* OSError for ``error``, naming ``path`` (its os.fspath, as the os module names it) unless
 * NULL: the os module names the path for an open and not for a write or an fsync. */
static void
raise_os_error(int error, PyObject *path)
{
    PyObject *name = path == NULL ? NULL : PyOS_FSPath(path);
    if (path != NULL && name == NULL) {
        return;
    }
    errno = error;
    PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name);
    Py_XDECREF(name);
}

/* `path` as os.open converts it (PyUnicode_FSConverter), with os.open's error for an object
 * that is neither str, bytes nor os.PathLike: 1 with the bytes in *converted, else 0. */
static int
open_path(PyObject *path, PyObject **converted)
{
    if (!PyUnicode_Check(path) && !PyBytes_Check(path)
            && !PyObject_HasAttrString((PyObject *)Py_TYPE(path), "__fspath__")) {
        PyErr_Format(PyExc_TypeError,
                     "open: path should be string, bytes or os.PathLike, not %.200s",
                     Py_TYPE(path)->tp_name);
        return 0;
    }
    return PyUnicode_FSConverter(path, converted);
}

PyDoc_STRVAR(create_synced_doc,
"create_synced(path, data, mode, /)\n--\n\n"
"Create ``path`` (O_EXCL, with ``mode``), write all of ``data``, fsync and close it, without\n"
"the GIL; on an error the file (when it was made) is removed and OSError goes up as\n"
"fsutil.create_file's os calls raise it (its errno; ``path`` named when the open failed).");

static PyObject *
create_synced(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "create_synced takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *path = NULL;
    if (!open_path(args[0], &path)) {
        return NULL;
    }
    long mode = PyLong_AsLong(args[2]);  /* a C int, as os.open takes it */
    if (mode == -1 && PyErr_Occurred()) {
        Py_DECREF(path);
        return NULL;
    }
    if (mode > INT_MAX || mode < INT_MIN) {
        PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C int");
        Py_DECREF(path);
        return NULL;
    }
    Py_buffer data;
    if (!PyObject_CheckBuffer(args[1])) {  /* memoryview's error, as write_all's */
        PyErr_Format(PyExc_TypeError, "memoryview: a bytes-like object is required, not '%.200s'",
                     Py_TYPE(args[1])->tp_name);
        Py_DECREF(path);
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
        Py_DECREF(path);
        return NULL;
    }
    const char *name = PyBytes_AS_STRING(path);
    int error = 0, opened = 1;
    Py_BEGIN_ALLOW_THREADS
    int fd;
    do {
        fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        error = errno;
        opened = 0;
    }
    else {
        if (write_fully(fd, data.buf, data.len) < 0 || fsync_retried(fd) < 0) {
            error = errno;
        }
        if (close(fd) < 0 && error == 0 && errno != EINTR) {
            error = errno;  /* EINTR: the descriptor is closed on Linux; nothing to retry */
        }
        if (error != 0) {
            unlink(name);
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    if (error != 0) {
        raise_os_error(error, opened ? NULL : args[0]);
        Py_DECREF(path);
        return NULL;
    }
    Py_DECREF(path);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(fsync_directory_doc,
"fsync_directory(directory, /)\n--\n\n"
"Open ``directory`` (O_DIRECTORY), fsync and close it, without the GIL; OSError as\n"
"fsutil.fsync_directory's os calls raise it (``directory`` named when the open failed).");

static PyObject *
fsync_directory(PyObject *module, PyObject *directory)
{
    PyObject *path = NULL;
    if (!open_path(directory, &path)) {
        return NULL;
    }
    const char *name = PyBytes_AS_STRING(path);
    int error = 0, opened = 1;
    Py_BEGIN_ALLOW_THREADS
    int fd;
    do {
        fd = open(name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        error = errno;
        opened = 0;
    }
    else {
        if (fsync_retried(fd) < 0) {
            error = errno;
        }
        if (close(fd) < 0 && error == 0 && errno != EINTR) {
            error = errno;
        }
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (error != 0) {
        raise_os_error(error, opened ? NULL : directory);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef accel_methods[] = {
    {"build_outcome", (PyCFunction)(void (*)(void))build_outcome, METH_FASTCALL,
     build_outcome_doc},
    {"direct_targets", (PyCFunction)(void (*)(void))direct_targets, METH_FASTCALL,
     direct_targets_doc},
    {"write_record", (PyCFunction)(void (*)(void))write_record, METH_FASTCALL,
     write_record_doc},
    {"append_line", (PyCFunction)(void (*)(void))append_line, METH_FASTCALL, append_line_doc},
    {"or_words", (PyCFunction)(void (*)(void))or_words, METH_FASTCALL, or_words_doc},
    {"create_synced", (PyCFunction)(void (*)(void))create_synced, METH_FASTCALL,
     create_synced_doc},
    {"fsync_directory", (PyCFunction)fsync_directory, METH_O, fsync_directory_doc},
    {"construct_in_c", (PyCFunction)construct_in_c, METH_O, construct_in_c_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef accel_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mta_logging._accel",
    .m_doc = "The per-record work of AccountingLogger's accelerated path, in C (see speedups.py).",
    .m_size = -1,
    .m_methods = accel_methods,
};

PyMODINIT_FUNC
PyInit__accel(void)
{
    struct { PyObject **name; const char *text; } names[] = {
        {&str_line, "_line"}, {&str_separator, "_separator"},
        {&str_separators, "_separators"}, {&str_file, "_file"}, {&str_torn, "torn"},
        {&str_fsync, "fsync"}, {&str_records, "records"}, {&str_size, "size"},
        {&str_max_bytes, "max_bytes"}, {&str_rollover_at, "rollover_at"}, {&str_fd, "fd"},
        {&str_always, "always"}, {&str_disabled, "disabled"}, {&str_filters, "filters"},
        {&str_dict, "__dict__"}, {&str_handlers, "handlers"},
        {&str_writes_directly, "_writes_directly"}, {&str_kind, "kind"}, {&str_level, "level"},
        {&str_formatter, "formatter"}, {&str_lock, "lock"}, {&str_parent, "parent"},
        {&str_propagate, "propagate"}, {&str_last_second, "last_second"},
        {&str_code, "code"}, {&str_value, "value"}, {&str_text, "text"}, {&str_of, "of"},
        {&str_time_queued, "time_queued"}, {&str_logger, "logger"},
        {&str_is_enabled_for, "isEnabledFor"}, {&str_emit, "_emit"},
        {&str_make_record, "_make_record"}, {&str_on_write_error, "on_write_error"},
        {&str_record, "record"}, {&str_outcome_builder, "_outcome"},
        {&str_direct_global, "_direct"}, {&str_template_record, "template_record"},
        {&str_logging, "logging"}, {&str_log_record_factory, "_logRecordFactory"},
        {&str_log_record, "_LogRecord"}, {&str_os, "os"}, {&str_write, "write"},
        {&str_os_write, "_OS_WRITE"}, {&str_accelerated_names, "_ACCELERATED_NAMES"},
        {&str_handler_class, "handler_class"}, {&str_formatter_class, "formatter_class"},
        {&str_accelerated_methods, "accelerated_methods"}, {&str_time, "time"},
        {&str_write_whole, "write_whole"}, {&str_enter, "__enter__"},
        {&str_exit, "__exit__"}, {&str_write_failed, "WRITE_FAILED"},
        {&str_cache, "_cache"}, {&str_outcome, "outcome"}, {&str_created, "created"},
        {&str_filter_set, "_filter_set"}, {&str_filter, "filter"},
        {&str_accelerator, "ACCELERATOR"}, {&str_filter_global, "FILTER"},
        {&str_outcome_global, "Outcome"}, {&str_init, "__init__"},
        {&str_write_record, "write_record"}, {&str_emit_name, "emit"},
        {&str_emit_in_c, "_emit_in_c"}, {&str_finish_routed, "finish_routed"},
    };
    for (size_t at = 0; at < sizeof(names) / sizeof(names[0]); at++) {
        if (*names[at].name == NULL
                && (*names[at].name = PyUnicode_InternFromString(names[at].text)) == NULL) {
            return NULL;
        }
    }
    if (PyType_Ready(&LineType) < 0 || PyType_Ready(&EmitterType) < 0
            || PyType_Ready(&EntryType) < 0 || PyType_Ready(&InitType) < 0
            || PyType_Ready(&HandleType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&accel_module);
    if (module != NULL && (PyModule_AddObjectRef(module, "Line", (PyObject *)&LineType) < 0
            || PyModule_AddObjectRef(module, "Emitter", (PyObject *)&EmitterType) < 0
            || PyModule_AddObjectRef(module, "Entry", (PyObject *)&EntryType) < 0
            || PyModule_AddObjectRef(module, "Init", (PyObject *)&InitType) < 0
            || PyModule_AddObjectRef(module, "Handle", (PyObject *)&HandleType) < 0)) {
        Py_CLEAR(module);
    }
    return module;
}
