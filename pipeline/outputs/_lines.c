/* JSON Lines and CSV blocks made in one pass: `pipeline.outputs._lines`.
 *
 * `scalar_lines(times, start, end, sensors)` returns, as bytes, the lines of rows
 * [start, end) in time-then-sensor order, each
 *
 *     {"sampleTime":"<time>","sensorCode":"<code>","value":<value>,"qaqcFlag":<flag>}\n
 *
 * exactly as `pipeline/outputs/jsonl.py` spells them without this module (`_scalar_block_py`,
 * the reference the tests compare this with). `sensors` holds, per sensor in line order, a
 * tuple (head, body, values, flags):
 *
 * - head: `","sensorCode":"<code>","value":` as bytes;
 * - body: the rows' values spelled as one JSON array without its brackets (orjson's or
 *   ujson's `dumps` of them, which chose the digits); a `null` there is a value JSON has no
 *   number for, written as ONC's dialect spells it (`NaN`, `Infinity`, `-Infinity`) after
 *   looking at the value itself;
 * - values: the rows' values, a buffer of doubles (`array('d')`);
 * - flags: the rows' flags, a buffer of `int8` or `int64` (`array('b')`, `array('q')`).
 *
 * `value_body(values)` spells a buffer of doubles as such a body where it can do so cheaply
 * and exactly (below), else returns None and the caller asks orjson or ujson.
 *
 * `csv_lines(times, width, stations, station_rows, sensors)` returns the data rows of a CSV
 * block (`pipeline/outputs/csv.py`, whose Arrow rendering is the reference):
 * `time,<station cells>,<value>,<flag>,...` and a newline, a value and its flag both empty
 * where the flag is ABSENT_FLAG (-127, no record), NaN as ERDDAP spells it (`NaN`),
 * infinities as `repr` does (`inf`, `-inf`), other values as their body's token (repr's spelling: the caller
 * passes `value_body`'s, or orjson's where it is repr's).
 *
 * Python builds these lines from a few C calls per block but still makes one string object
 * per value and lays four pieces a line into a list for `str.join`; here the text is copied
 * once into the result. No Python object is made per line.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static const char TIME_HEAD[] = "{\"sampleTime\":\"";
static const char FLAG_HEAD[] = ",\"qaqcFlag\":";
#define TIME_HEAD_LEN (sizeof(TIME_HEAD) - 1)
#define FLAG_HEAD_LEN (sizeof(FLAG_HEAD) - 1)

typedef struct {
    const char *head;
    Py_ssize_t head_len;
    const char *body;
    Py_buffer values;
    Py_buffer flags;
    int flags_wide;           /* 1: int64 flags, 0: int8 flags */
    Py_ssize_t *token_start;  /* rows + 1 offsets into body: token i is [start[i], start[i+1] - 1) */
} Sensor;

/* The decimal digits of `flag` into `out` (at least 21 bytes); returns their count. */
static Py_ssize_t
flag_text(int64_t flag, char *out)
{
    char digits[24];
    Py_ssize_t count = 0;
    uint64_t magnitude = flag < 0 ? (uint64_t)0 - (uint64_t)flag : (uint64_t)flag;
    do {
        digits[count++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    Py_ssize_t length = 0;
    if (flag < 0) {
        out[length++] = '-';
    }
    while (count) {
        out[length++] = digits[--count];
    }
    return length;
}

static int64_t
flag_at(const Sensor *sensor, Py_ssize_t row)
{
    if (sensor->flags_wide) {
        return ((const int64_t *)sensor->flags.buf)[row];
    }
    return ((const int8_t *)sensor->flags.buf)[row];
}

/* What a `null` token of `value` is spelled as. */
static const char *
non_finite_text(double value)
{
    if (isnan(value)) {
        return "NaN";
    }
    return value > 0 ? "Infinity" : "-Infinity";
}

static int
is_null(const char *token, Py_ssize_t length)
{
    return length == 4 && memcmp(token, "null", 4) == 0;
}

/* A JSON line's value of `sensor` at `row` into `*text`, `*length`: its body's token, or
 * where that is `null`, the value's own spelling in ONC's dialect. */
static void
json_value(const Sensor *sensor, Py_ssize_t row, const char **text, Py_ssize_t *length)
{
    *text = sensor->body + sensor->token_start[row];
    *length = sensor->token_start[row + 1] - sensor->token_start[row] - 1;
    if (is_null(*text, *length)) {
        *text = non_finite_text(((const double *)sensor->values.buf)[row]);
        *length = (Py_ssize_t)strlen(*text);
    }
}

/* Where a row's text goes: counted only (`at` NULL: the sizing pass), or also copied to
 * `at` (the writing pass). Both passes run the same row function, so they cannot disagree
 * on a length. */
typedef struct {
    char *at;
    Py_ssize_t size;
} Sink;

static void
emit(Sink *sink, const char *text, Py_ssize_t length)
{
    if (sink->at != NULL) {
        memcpy(sink->at, text, (size_t)length);
        sink->at += length;
    }
    sink->size += length;
}

static void
emit_flag(Sink *sink, int64_t flag)
{
    char digits[24];
    emit(sink, digits, flag_text(flag, digits));
}

/* Row `row`'s JSON lines, a line a sensor. */
static void
json_row(Sink *sink, const Sensor *sensors, Py_ssize_t count, const char *time,
         Py_ssize_t time_len, Py_ssize_t row)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        const Sensor *sensor = &sensors[i];
        const char *text;
        Py_ssize_t length;
        json_value(sensor, row, &text, &length);
        emit(sink, TIME_HEAD, TIME_HEAD_LEN);
        emit(sink, time, time_len);
        emit(sink, sensor->head, sensor->head_len);
        emit(sink, text, length);
        emit(sink, FLAG_HEAD, FLAG_HEAD_LEN);
        emit_flag(sink, flag_at(sensor, row));
        emit(sink, "}\n", 2);
    }
}

static void
release(Sensor *sensors, Py_ssize_t count)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        if (sensors[i].values.obj) {
            PyBuffer_Release(&sensors[i].values);
        }
        if (sensors[i].flags.obj) {
            PyBuffer_Release(&sensors[i].flags);
        }
        PyMem_Free(sensors[i].token_start);
    }
    PyMem_Free(sensors);
}

/* Fill `sensor` from the tuple `item` for `rows` rows; on error set an exception, return -1.
 * The tuple (held by the caller's own tuple of sensors) keeps head and body alive. */
static int
take_sensor(PyObject *item, Py_ssize_t rows, Sensor *sensor)
{
    PyObject *head, *body, *values, *flags;
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4) {
        PyErr_SetString(PyExc_TypeError, "a sensor is a tuple (head, body, values, flags)");
        return -1;
    }
    head = PyTuple_GET_ITEM(item, 0);
    body = PyTuple_GET_ITEM(item, 1);
    values = PyTuple_GET_ITEM(item, 2);
    flags = PyTuple_GET_ITEM(item, 3);
    if (!PyBytes_Check(head) || !PyBytes_Check(body)) {
        PyErr_SetString(PyExc_TypeError, "a sensor's head and body are bytes");
        return -1;
    }
    sensor->head = PyBytes_AS_STRING(head);
    sensor->head_len = PyBytes_GET_SIZE(head);
    sensor->body = PyBytes_AS_STRING(body);
    if (PyObject_GetBuffer(values, &sensor->values, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    if (sensor->values.itemsize != 8 || strcmp(sensor->values.format, "d") != 0
        || sensor->values.len / 8 != rows) {
        PyErr_SetString(PyExc_ValueError, "a sensor's values are one double a row");
        return -1;
    }
    if (PyObject_GetBuffer(flags, &sensor->flags, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    const char *format = sensor->flags.format;
    if (sensor->flags.itemsize == 1 && strcmp(format, "b") == 0) {
        sensor->flags_wide = 0;
    }
    else if (sensor->flags.itemsize == 8 && (strcmp(format, "q") == 0 || strcmp(format, "l") == 0)) {
        sensor->flags_wide = 1;
    }
    else {
        PyErr_SetString(PyExc_ValueError, "a sensor's flags are int8 or int64");
        return -1;
    }
    if (sensor->flags.len / sensor->flags.itemsize != rows) {
        PyErr_SetString(PyExc_ValueError, "a sensor has one flag a row");
        return -1;
    }
    /* The tokens of the body: exactly `rows` of them, none empty. */
    sensor->token_start = PyMem_New(Py_ssize_t, rows + 1);
    if (sensor->token_start == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    const char *text = sensor->body;
    Py_ssize_t size = PyBytes_GET_SIZE(body), at = 0;
    for (Py_ssize_t row = 0; row < rows; row++) {
        sensor->token_start[row] = at;
        const char *comma = memchr(text + at, ',', (size_t)(size - at));
        Py_ssize_t next = comma ? comma - text + 1 : size + 1;
        if (next - 1 == at || (comma == NULL) != (row == rows - 1)) {
            PyErr_SetString(PyExc_ValueError, "a sensor's body has one number a row");
            return -1;
        }
        at = next;
    }
    if (rows && at != size + 1) {
        PyErr_SetString(PyExc_ValueError, "a sensor's body has one number a row");
        return -1;
    }
    sensor->token_start[rows] = at;
    return 0;
}

/* `*total + more`, or -1 with OverflowError set when it does not fit a Py_ssize_t. */
static int
add_size(Py_ssize_t *total, Py_ssize_t more)
{
    if (more < 0 || *total > PY_SSIZE_T_MAX - more) {
        PyErr_SetString(PyExc_OverflowError, "the lines would not fit in memory");
        return -1;
    }
    *total += more;
    return 0;
}

static PyObject *
scalar_lines(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *times_arg, *sensor_arg;
    Py_ssize_t start, end;
    if (!PyArg_ParseTuple(args, "O!nnO", &PyList_Type, &times_arg, &start, &end, &sensor_arg)) {
        return NULL;
    }
    if (start < 0 || end < start || end > PyList_GET_SIZE(times_arg)) {
        PyErr_SetString(PyExc_IndexError, "rows out of the times' range");
        return NULL;
    }
    /* Own every object read below: taking a buffer may run Python code (a class's
     * `__buffer__`, Python 3.12+), which could otherwise empty the caller's list and free a
     * time's text or a sensor's tuple while it is in use. */
    PyObject *times = PyList_GetSlice(times_arg, start, end);
    PyObject *tuple = times ? PySequence_Tuple(sensor_arg) : NULL;
    Py_ssize_t count = tuple ? PyTuple_GET_SIZE(tuple) : 0, rows = end - start;
    Sensor *sensors = NULL;
    const char **time_text = NULL;
    Py_ssize_t *time_len = NULL;
    PyObject *result = NULL;
    if (tuple == NULL) {
        goto done;
    }
    sensors = PyMem_Calloc(count ? (size_t)count : 1, sizeof(Sensor));
    time_text = PyMem_New(const char *, rows ? rows : 1);
    time_len = PyMem_New(Py_ssize_t, rows ? rows : 1);
    if (sensors == NULL || time_text == NULL || time_len == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* Every buffer first: no Python code runs after the times' text is taken. */
    for (Py_ssize_t i = 0; i < count; i++) {
        if (take_sensor(PyTuple_GET_ITEM(tuple, i), rows, &sensors[i]) < 0) {
            goto done;
        }
    }
    Py_ssize_t total = 0;
    for (Py_ssize_t row = 0; row < rows; row++) {
        PyObject *time = PyList_GET_ITEM(times, row);
        if (!PyUnicode_Check(time)) {
            PyErr_SetString(PyExc_TypeError, "a time is a str");
            goto done;
        }
        time_text[row] = PyUnicode_AsUTF8AndSize(time, &time_len[row]);
        if (time_text[row] == NULL) {
            goto done;
        }
        Sink sizing = {NULL, 0};
        json_row(&sizing, sensors, count, time_text[row], time_len[row], row);
        if (add_size(&total, sizing.size) < 0) {
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL) {
        goto done;
    }
    Sink writing = {PyBytes_AS_STRING(result), 0};
    for (Py_ssize_t row = 0; row < rows; row++) {
        json_row(&writing, sensors, count, time_text[row], time_len[row], row);
    }
    assert(writing.size == total);

done:
    if (sensors != NULL) {
        release(sensors, count);
    }
    PyMem_Free(time_text);
    PyMem_Free(time_len);
    Py_XDECREF(tuple);
    Py_XDECREF(times);
    return result;
}

/* -- values -------------------------------------------------------------------------------- */

/* The spelling below needs each double operation rounded to a double (SSE2, arm64): where
 * intermediates are wider (x87), the module is not built and Python's lines are used. */
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "double arithmetic with wider intermediates: pipeline.outputs._lines is not built"
#endif

/* 10^k for k in [0, 22]: each exactly a double. */
static const double POW10[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};
/* Decimals of at most 15 significant digits: each names a distinct double (DBL_DIG). */
#define MAX_DIGITS 1e15
/* The most fraction digits such a decimal of magnitude >= 1e-4 can have. */
#define MAX_FRACTION 19

/* D: the integer nearest |value| * 10^k. */
static double
scaled(double magnitude, int k)
{
    return nearbyint(magnitude * POW10[k]);
}

/* Write `value` as ujson spells it into `out` (at least 40 bytes); return the length, or -1
 * where this fast path does not reach (the caller then asks orjson or ujson for the column).
 *
 * ujson (double-conversion's shortest mode) writes the fewest significant digits that read
 * back as the same double, positionally from 1e-4 up to 1e16, with `.0` after an integer,
 * and NaN, Infinity, -Infinity for the values JSON has no number for. Within at most 15
 * significant digits the shortest decimal is the one with the fewest fraction digits k whose
 * integer D = round(|value| * 10^k) gives back the value as D / 10^k: every decimal that
 * reads back as the value is within half a unit of the last place of it, which at 15 digits
 * is under a tenth of a unit of D's last digit, so D is the only candidate at each k, and
 * reading back is exact once at k (D * 10 / 10^(k+1) is the same quotient), so k is found by
 * stepping from `*hint` (the previous value's k: a sensor's readings keep their decimals).
 * D and 10^k are exact doubles (D < 10^15 < 2^53, k <= 22) and IEEE division rounds their
 * quotient correctly, so D / 10^k is the double the decimal's text parses to (the fast path
 * of Clinger's strtod).
 * Values of 16 or 17 digits, or under 1e-4, return -1. */
static Py_ssize_t
spell_double(double value, char *out, int *hint)
{
    if (isnan(value)) {
        memcpy(out, "NaN", 3);
        return 3;
    }
    if (isinf(value)) {
        if (value > 0) {
            memcpy(out, "Infinity", 8);
            return 8;
        }
        memcpy(out, "-Infinity", 9);
        return 9;
    }
    Py_ssize_t length = 0;
    if (signbit(value)) {
        out[length++] = '-';
    }
    double magnitude = fabs(value);
    if (magnitude == 0.0) {
        memcpy(out + length, "0.0", 3);
        return length + 3;
    }
    if (magnitude < 1e-4 || magnitude >= MAX_DIGITS) {
        return -1;
    }
    /* From the hint down to where D has at most 15 digits, then down while D / 10^k still
     * reads back as the value, or else up until it does. */
    int k = *hint;
    while (k > 0 && scaled(magnitude, k) >= MAX_DIGITS) {
        k--;
    }
    double digits = scaled(magnitude, k);
    if (digits / POW10[k] == magnitude) {
        while (k > 0 && scaled(magnitude, k - 1) / POW10[k - 1] == magnitude) {
            digits = scaled(magnitude, --k);
        }
    }
    else {
        do {
            if (++k > MAX_FRACTION) {
                return -1;
            }
            digits = scaled(magnitude, k);
            if (digits >= MAX_DIGITS) {
                return -1;
            }
        } while (digits / POW10[k] != magnitude);
    }
    *hint = k;
    /* D's decimal digits, at least k + 1 of them (a leading 0 before the point). */
    char text[24];
    int count = 0;
    uint64_t whole = (uint64_t)digits;
    do {
        text[count++] = (char)('0' + whole % 10);
        whole /= 10;
    } while (whole);
    while (count < k + 1) {
        text[count++] = '0';
    }
    while (count > k) {
        out[length++] = text[--count];
    }
    out[length++] = '.';
    if (k == 0) {
        out[length++] = '0';
    }
    while (count) {
        out[length++] = text[--count];
    }
    return length;
}

static PyObject *
value_body(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer values;
    if (PyObject_GetBuffer(arg, &values, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        return NULL;
    }
    if (values.itemsize != 8 || strcmp(values.format, "d") != 0) {
        PyBuffer_Release(&values);
        PyErr_SetString(PyExc_ValueError, "values are doubles");
        return NULL;
    }
    Py_ssize_t count = values.len / 8;
    /* A spelling here is at most 22 bytes (`-0.000123456789012345`); 40 and a comma bound
     * it with room to spare. */
    if (count > PY_SSIZE_T_MAX / 41) {
        PyBuffer_Release(&values);
        PyErr_SetString(PyExc_OverflowError, "the values would not fit in memory");
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, count * 41);
    if (result == NULL) {
        PyBuffer_Release(&values);
        return NULL;
    }
    char *start = PyBytes_AS_STRING(result), *out = start;
    int hint = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (i) {
            *out++ = ',';
        }
        Py_ssize_t length = spell_double(((const double *)values.buf)[i], out, &hint);
        if (length < 0) {
            PyBuffer_Release(&values);
            Py_DECREF(result);
            Py_RETURN_NONE;
        }
        out += length;
    }
    PyBuffer_Release(&values);
    if (_PyBytes_Resize(&result, out - start) < 0) {
        return NULL;
    }
    return result;
}

/* -- CSV ----------------------------------------------------------------------------------- */

#define ABSENT_FLAG (-127)

static const char *
csv_non_finite(double value)
{
    if (isnan(value)) {
        return "NaN";
    }
    return value > 0 ? "inf" : "-inf";
}

/* A CSV row's value cell of `sensor` at `row` into `*text`, `*length` (empty when absent). */
static void
csv_value(const Sensor *sensor, Py_ssize_t row, const char **text, Py_ssize_t *length)
{
    double value = ((const double *)sensor->values.buf)[row];
    if (flag_at(sensor, row) == ABSENT_FLAG) {
        *text = "";
        *length = 0;
    }
    else if (!isfinite(value)) {
        *text = csv_non_finite(value);
        *length = (Py_ssize_t)strlen(*text);
    }
    else {
        *text = sensor->body + sensor->token_start[row];
        *length = sensor->token_start[row + 1] - sensor->token_start[row] - 1;
    }
}

/* Row `row`'s CSV line: its time, its station's cells, each sensor's value and flag. */
static void
csv_row(Sink *sink, const char *time, Py_ssize_t width, PyObject *station,
        const Sensor *sensors, Py_ssize_t count, Py_ssize_t row)
{
    emit(sink, time, width);
    emit(sink, ",", 1);
    emit(sink, PyBytes_AS_STRING(station), PyBytes_GET_SIZE(station));
    for (Py_ssize_t i = 0; i < count; i++) {
        const char *text;
        Py_ssize_t length;
        csv_value(&sensors[i], row, &text, &length);
        emit(sink, ",", 1);
        emit(sink, text, length);
        emit(sink, ",", 1);
        int64_t flag = flag_at(&sensors[i], row);
        if (flag != ABSENT_FLAG) {
            emit_flag(sink, flag);
        }
    }
    emit(sink, "\n", 1);
}

static PyObject *
csv_lines(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *times_arg, *stations_arg, *rows_arg, *sensor_arg;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "OnOOO", &times_arg, &width, &stations_arg, &rows_arg, &sensor_arg)) {
        return NULL;
    }
    Py_buffer times = {0}, station_rows = {0};
    PyObject *stations = NULL, *tuple = NULL, *result = NULL;
    Sensor *sensors = NULL;
    Py_ssize_t count = 0, rows = 0;
    /* Own what is read below (see scalar_lines): tuples of the stations and the sensors. */
    stations = PySequence_Tuple(stations_arg);
    tuple = stations ? PySequence_Tuple(sensor_arg) : NULL;
    if (tuple == NULL) {
        goto done;
    }
    count = PyTuple_GET_SIZE(tuple);
    Py_ssize_t station_count = PyTuple_GET_SIZE(stations);
    for (Py_ssize_t i = 0; i < station_count; i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(stations, i))) {
            PyErr_SetString(PyExc_TypeError, "a station's cells are bytes");
            goto done;
        }
    }
    if (PyObject_GetBuffer(times_arg, &times, PyBUF_C_CONTIGUOUS) < 0
        || PyObject_GetBuffer(rows_arg, &station_rows, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        goto done;
    }
    const char *format = station_rows.format;
    if (station_rows.itemsize != 8 || format[0] == '\0' || strchr("qlQL", format[0]) == NULL
        || format[1] != '\0') {
        PyErr_SetString(PyExc_ValueError, "station rows are 64-bit integers");
        goto done;
    }
    rows = station_rows.len / 8;
    if (width <= 0 || times.len % width != 0 || times.len / width != rows) {
        PyErr_SetString(PyExc_ValueError, "one time of `width` bytes a row");
        goto done;
    }
    sensors = PyMem_Calloc(count ? (size_t)count : 1, sizeof(Sensor));
    if (sensors == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (take_sensor(PyTuple_GET_ITEM(tuple, i), rows, &sensors[i]) < 0) {
            goto done;
        }
    }
    /* Checked after every buffer is taken (taking one may run Python code, see above). */
    const int64_t *station_of = station_rows.buf;
    for (Py_ssize_t row = 0; row < rows; row++) {
        if (station_of[row] < 0 || station_of[row] >= station_count) {
            PyErr_SetString(PyExc_IndexError, "a row's station is not one of the stations");
            goto done;
        }
    }
    Py_ssize_t total = 0;
    for (Py_ssize_t row = 0; row < rows; row++) {
        Sink sizing = {NULL, 0};
        csv_row(&sizing, (const char *)times.buf + row * width, width,
                PyTuple_GET_ITEM(stations, station_of[row]), sensors, count, row);
        if (add_size(&total, sizing.size) < 0) {
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL) {
        goto done;
    }
    Sink writing = {PyBytes_AS_STRING(result), 0};
    for (Py_ssize_t row = 0; row < rows; row++) {
        csv_row(&writing, (const char *)times.buf + row * width, width,
                PyTuple_GET_ITEM(stations, station_of[row]), sensors, count, row);
    }
    assert(writing.size == total);

done:
    if (sensors != NULL) {
        release(sensors, count);
    }
    if (times.obj) {
        PyBuffer_Release(&times);
    }
    if (station_rows.obj) {
        PyBuffer_Release(&station_rows);
    }
    Py_XDECREF(tuple);
    Py_XDECREF(stations);
    return result;
}

static PyMethodDef methods[] = {
    {"csv_lines", csv_lines, METH_VARARGS,
     "csv_lines(times, width, stations, station_rows, sensors) -> bytes: a CSV block's rows."},
    {"value_body", value_body, METH_O,
     "value_body(values) -> bytes | None: doubles spelled as ujson does, comma-separated."},
    {"scalar_lines", scalar_lines, METH_VARARGS,
     "scalar_lines(times, start, end, sensors) -> bytes: the JSON Lines of rows [start, end)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pipeline.outputs._lines",
    "JSON Lines and CSV blocks made in one pass (see _lines.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__lines(void)
{
    return PyModule_Create(&module);
}
