/*
 * A stand-in for vmcompute.dll, for testing berth's HCS binding on Linux.
 *
 * It exports the same C entry points hcsshim v0.6.8 used (HcsCreateComputeSystem, ...,
 * NameToGuid, plus CoTaskMemFree for the strings it returns), with the same calling
 * conventions: UTF-16 strings in, CoTaskMemFree-able UTF-16 result/property documents out,
 * HCS_E_OPERATION_PENDING for asynchronous operations whose completion is notified through the
 * registered callback from another thread, and pipe handles (here: file descriptors) for the
 * process's stdio.
 *
 * Every call is appended to "calls.log" in the directory the library was loaded from (tests
 * copy the library into a fresh directory per test, which also gives each test its own
 * instance of this state): one line per call, fields separated by tabs, with \\, \t and \n
 * escaped; handles are small integers; "=N" records a handle or pid the call returned.
 *
 * Behaviour is driven by the inputs, so tests need no side channel:
 *  - container id containing "create-fails": create fails synchronously (result document);
 *    "late-exec-exits": on shutdown, processes other than the first report their exit only
 *    after the system's exit, with a delay;
 *    "start-fails": the start completes with an error; "shutdown-fails": shutdown fails
 *    synchronously; "terminate-fails": terminate fails synchronously.
 *  - the process command (CommandLine, or the CommandArgs joined): "cat" copies stdin to
 *    stdout until CloseHandle(StdIn) arrives (closing the host end of the pipe alone does not
 *    end its input, as with real HCS), then exits 0; "exit N" writes "out\n"/"err\n"
 *    and exits N; "sleep" runs until killed; "fail-create" makes CreateProcess fail.
 *    Killed processes exit with 1.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int32_t HRESULT;
typedef uint16_t WCHAR;
typedef void *HANDLE;
typedef void (*notify_cb)(uint32_t type, void *context, HRESULT status, const WCHAR *data);

#define S_OK 0
#define E_PENDING ((HRESULT)0xC0370103u)
#define E_INVALID_STATE ((HRESULT)0xC0370105u)
#define E_SYSTEM_NOT_FOUND ((HRESULT)0xC037010Eu)
#define E_ALREADY_STOPPED ((HRESULT)0xC0370110u)
#define E_ELEMENT_NOT_FOUND ((HRESULT)0x80070490u)
#define E_FILE_NOT_FOUND ((HRESULT)0x80070002u)
#define E_INVALIDARG ((HRESULT)0x80070057u)
#define E_HANDLE ((HRESULT)0x80070006u)
#define E_OPERATION_TIMEOUT ((HRESULT)0xC0370109u)

#define N_SYSTEM_EXITED 1u
#define N_CREATE_COMPLETED 2u
#define N_START_COMPLETED 3u
#define N_PAUSE_COMPLETED 4u
#define N_RESUME_COMPLETED 5u
#define N_PROCESS_EXITED 0x10000u

#define MAX 256

enum { ST_CREATED, ST_RUNNING, ST_PAUSED, ST_STOPPED };

struct sys {
    int used;
    char name[512];
    int state;
    int stopping;
};

struct syshandle {
    int used;
    int sys;
    int closed;
    notify_cb cb;
    void *ctx;
    int cb_handle;
    int create_pending;
};

struct proc {
    int used;
    int sys;
    int closed;
    unsigned pid;
    int exited;
    uint32_t exit_code;
    int ctl[2];
    int in_r, out_w, err_w;
    notify_cb cb;
    void *ctx;
    int cb_handle;
    int notify_pending;
    int deferred;
    char cmd[256];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct sys systems[MAX];
static struct syshandle shandles[MAX];
static struct proc procs[MAX];
static unsigned next_pid = 100;
static int next_cb = 1;
static char log_path[4096];

#define SYS_BASE 1000
#define PROC_BASE 2000

/* ------------------------------------------------------------------ strings */

static char *u8(const WCHAR *w) {
    if (!w) return strdup("(null)");
    size_t n = 0;
    while (w[n]) n++;
    char *out = malloc(n * 4 + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = w[i];
        if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && w[i + 1] >= 0xDC00 && w[i + 1] <= 0xDFFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (w[i + 1] - 0xDC00);
            i++;
        }
        if (c < 0x80) *o++ = (char)c;
        else if (c < 0x800) { *o++ = 0xC0 | (c >> 6); *o++ = 0x80 | (c & 0x3F); }
        else if (c < 0x10000) { *o++ = 0xE0 | (c >> 12); *o++ = 0x80 | ((c >> 6) & 0x3F); *o++ = 0x80 | (c & 0x3F); }
        else { *o++ = 0xF0 | (c >> 18); *o++ = 0x80 | ((c >> 12) & 0x3F); *o++ = 0x80 | ((c >> 6) & 0x3F); *o++ = 0x80 | (c & 0x3F); }
    }
    *o = 0;
    return out;
}

/* UTF-8 -> malloc'ed UTF-16, freed by the caller with CoTaskMemFree. */
static WCHAR *wdup(const char *s) {
    size_t n = strlen(s);
    WCHAR *out = malloc((n + 1) * sizeof(WCHAR)), *o = out;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t c;
        if (*p < 0x80) c = *p++;
        else if ((*p & 0xE0) == 0xC0) { c = (*p++ & 0x1F) << 6; c |= *p++ & 0x3F; }
        else if ((*p & 0xF0) == 0xE0) { c = (*p++ & 0x0F) << 12; c |= (*p++ & 0x3F) << 6; c |= *p++ & 0x3F; }
        else { c = (*p++ & 0x07) << 18; c |= (*p++ & 0x3F) << 12; c |= (*p++ & 0x3F) << 6; c |= *p++ & 0x3F; }
        if (c >= 0x10000) { c -= 0x10000; *o++ = 0xD800 + (c >> 10); *o++ = 0xDC00 + (c & 0x3FF); }
        else *o++ = (WCHAR)c;
    }
    *o = 0;
    return out;
}

void CoTaskMemFree(void *p) { free(p); }

/* ------------------------------------------------------------------ call log */

__attribute__((constructor)) static void init_log_path(void) {
    Dl_info info;
    if (dladdr((void *)&init_log_path, &info) && info.dli_fname) {
        char *copy = strdup(info.dli_fname);
        snprintf(log_path, sizeof log_path, "%s/calls.log", dirname(copy));
        free(copy);
    }
}

static void put_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '\\') fputs("\\\\", f);
        else if (*s == '\t') fputs("\\t", f);
        else if (*s == '\n') fputs("\\n", f);
        else fputc(*s, f);
    }
}

/* Logs a call: fields are UTF-8 strings, NULL ends the list. */
static void logcall(const char *name, ...) {
    pthread_mutex_lock(&mu);
    FILE *f = fopen(log_path, "ae");
    if (f) {
        fputs(name, f);
        va_list ap;
        va_start(ap, name);
        const char *a;
        while ((a = va_arg(ap, const char *)) != NULL) {
            fputc('\t', f);
            put_escaped(f, a);
        }
        va_end(ap);
        fputc('\n', f);
        fclose(f);
    }
    pthread_mutex_unlock(&mu);
}

static const char *num(char *buf, long v) { snprintf(buf, 32, "%ld", v); return buf; }

static void set_result(WCHAR **result, HRESULT hr, const char *msg) {
    if (!result) return;
    char doc[1024];
    snprintf(doc, sizeof doc,
             "{\"Error\":%d,\"ErrorMessage\":\"%s\",\"ErrorEvents\":[{\"Message\":\"stand-in event\",\"EventId\":7}]}",
             hr, msg);
    *result = wdup(doc);
}

/* ------------------------------------------------------------------ notifications */

struct fire { int is_proc; int handle; uint32_t type; HRESULT status; };

static void *fire_thread(void *arg) {
    struct fire f = *(struct fire *)arg;
    free(arg);
    notify_cb cb = NULL;
    void *ctx = NULL;
    pthread_mutex_lock(&mu);
    if (f.is_proc) {
        struct proc *p = &procs[f.handle - PROC_BASE];
        if (!p->closed) { cb = p->cb; ctx = p->ctx; }
    } else {
        struct syshandle *h = &shandles[f.handle - SYS_BASE];
        if (!h->closed) { cb = h->cb; ctx = h->ctx; }
    }
    pthread_mutex_unlock(&mu);
    if (cb) cb(f.type, ctx, f.status, NULL);
    return NULL;
}

static void fire_async(int is_proc, int handle, uint32_t type, HRESULT status) {
    struct fire *f = malloc(sizeof *f);
    f->is_proc = is_proc; f->handle = handle; f->type = type; f->status = status;
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_create(&t, &a, fire_thread, f);
    pthread_attr_destroy(&a);
}

/* Fires `type` at every open handle of system `s` (caller holds no lock). */
static void fire_all(int s, uint32_t type, HRESULT status) {
    int hs[MAX], n = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < MAX; i++)
        if (shandles[i].used && shandles[i].sys == s && !shandles[i].closed) hs[n++] = SYS_BASE + i;
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < n; i++) fire_async(0, hs[i], type, status);
}

/* ------------------------------------------------------------------ compute systems */

static struct syshandle *lookup(HANDLE h) {
    intptr_t i = (intptr_t)h - SYS_BASE;
    if (i < 0 || i >= MAX || !shandles[i].used || shandles[i].closed) return NULL;
    return &shandles[i];
}

static int new_handle(int s) {
    for (int i = 0; i < MAX; i++)
        if (!shandles[i].used) {
            memset(&shandles[i], 0, sizeof shandles[i]);
            shandles[i].used = 1;
            shandles[i].sys = s;
            return SYS_BASE + i;
        }
    return 0;
}

HRESULT HcsCreateComputeSystem(const WCHAR *id, const WCHAR *config, HANDLE identity, HANDLE *system, WCHAR **result) {
    char *sid = u8(id), *cfg = u8(config), b[32];
    HRESULT hr;
    if (strstr(sid, "create-fails")) {
        logcall("HcsCreateComputeSystem", sid, cfg, identity ? "identity" : "no-identity", "=error", NULL);
        set_result(result, E_INVALIDARG, "The parameter is incorrect.");
        free(sid); free(cfg);
        return E_INVALIDARG;
    }
    pthread_mutex_lock(&mu);
    int s = -1;
    for (int i = 0; i < MAX; i++) if (!systems[i].used) { s = i; break; }
    memset(&systems[s], 0, sizeof systems[s]);
    systems[s].used = 1;
    snprintf(systems[s].name, sizeof systems[s].name, "%s", sid);
    systems[s].state = ST_CREATED;
    int h = new_handle(s);
    shandles[h - SYS_BASE].create_pending = 1;
    pthread_mutex_unlock(&mu);
    *system = (HANDLE)(intptr_t)h;
    hr = E_PENDING;
    logcall("HcsCreateComputeSystem", sid, cfg, identity ? "identity" : "no-identity", num(b, h), NULL);
    free(sid); free(cfg);
    return hr;
}

HRESULT HcsOpenComputeSystem(const WCHAR *id, HANDLE *system, WCHAR **result) {
    char *sid = u8(id), b[32];
    int h = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < MAX; i++)
        if (systems[i].used && strcmp(systems[i].name, sid) == 0) { h = new_handle(i); break; }
    pthread_mutex_unlock(&mu);
    logcall("HcsOpenComputeSystem", sid, num(b, h), NULL);
    free(sid);
    if (!h) { set_result(result, E_SYSTEM_NOT_FOUND, "A virtual machine or container with the specified identifier does not exist."); return E_SYSTEM_NOT_FOUND; }
    *system = (HANDLE)(intptr_t)h;
    return S_OK;
}

HRESULT HcsCloseComputeSystem(HANDLE system) {
    char b[32];
    logcall("HcsCloseComputeSystem", num(b, (intptr_t)system), NULL);
    pthread_mutex_lock(&mu);
    struct syshandle *h = lookup(system);
    if (h) { h->closed = 1; h->cb = NULL; }
    pthread_mutex_unlock(&mu);
    return h ? S_OK : E_HANDLE;
}

HRESULT HcsRegisterComputeSystemCallback(HANDLE system, notify_cb cb, void *ctx, HANDLE *cbh) {
    char b[32], c[32];
    pthread_mutex_lock(&mu);
    struct syshandle *h = lookup(system);
    int fire_create = 0;
    if (h) {
        h->cb = cb; h->ctx = ctx; h->cb_handle = 3000 + next_cb++;
        *cbh = (HANDLE)(intptr_t)h->cb_handle;
        fire_create = h->create_pending;
        h->create_pending = 0;
    }
    pthread_mutex_unlock(&mu);
    logcall("HcsRegisterComputeSystemCallback", num(b, (intptr_t)system), h ? num(c, h->cb_handle) : "none", NULL);
    if (!h) return E_HANDLE;
    if (fire_create) fire_async(0, (int)(intptr_t)system, N_CREATE_COMPLETED, S_OK);
    return S_OK;
}

HRESULT HcsUnregisterComputeSystemCallback(HANDLE cbh) {
    char b[32];
    logcall("HcsUnregisterComputeSystemCallback", num(b, (intptr_t)cbh), NULL);
    pthread_mutex_lock(&mu);
    for (int i = 0; i < MAX; i++)
        if (shandles[i].used && shandles[i].cb_handle == (intptr_t)cbh) { shandles[i].cb = NULL; }
    pthread_mutex_unlock(&mu);
    return S_OK;
}

HRESULT HcsStartComputeSystem(HANDLE system, const WCHAR *options, WCHAR **result) {
    char b[32], *o = u8(options);
    logcall("HcsStartComputeSystem", num(b, (intptr_t)system), o, NULL);
    free(o);
    (void)result;
    pthread_mutex_lock(&mu);
    struct syshandle *h = lookup(system);
    int fails = 0;
    if (h) {
        struct sys *s = &systems[h->sys];
        fails = strstr(s->name, "start-fails") != NULL;
        if (!fails) s->state = ST_RUNNING;
    }
    pthread_mutex_unlock(&mu);
    if (!h) return E_HANDLE;
    fire_async(0, (int)(intptr_t)system, N_START_COMPLETED, fails ? E_FILE_NOT_FOUND : S_OK);
    return E_PENDING;
}

struct stopper { int sys; };

static void *stop_thread(void *arg) {
    int s = ((struct stopper *)arg)->sys;
    free(arg);
    /* Kill every live process, wait for them to report, then report the system exit. */
    pthread_mutex_lock(&mu);
    for (int i = 0; i < MAX; i++)
        if (procs[i].used && procs[i].sys == s && !procs[i].exited) {
            ssize_t w = write(procs[i].ctl[1], "k", 1);
            (void)w;
        }
    pthread_mutex_unlock(&mu);
    for (;;) {
        int live = 0;
        pthread_mutex_lock(&mu);
        for (int i = 0; i < MAX; i++)
            if (procs[i].used && procs[i].sys == s && !procs[i].exited) live = 1;
        if (!live) systems[s].state = ST_STOPPED;
        pthread_mutex_unlock(&mu);
        if (!live) break;
        usleep(1000);
    }
    fire_all(s, N_SYSTEM_EXITED, S_OK);
    /* "late-exec-exits": the first process (the init) reports its exit with the system, the
     * others only a while later, so a client that does not wait for exec exits before
     * reporting the init's exit is caught reporting them out of order. */
    int first = 1;
    for (int i = 0; i < MAX; i++) {
        pthread_mutex_lock(&mu);
        int d = procs[i].used && procs[i].sys == s && procs[i].deferred;
        if (d) procs[i].deferred = 0;
        pthread_mutex_unlock(&mu);
        if (!d) continue;
        if (!first) usleep(50000);
        first = 0;
        fire_async(1, PROC_BASE + i, N_PROCESS_EXITED, S_OK);
    }
    return NULL;
}

static HRESULT stop(const char *op, HANDLE system, const WCHAR *options, WCHAR **result, const char *fail_marker) {
    char b[32], *o = u8(options);
    logcall(op, num(b, (intptr_t)system), o, NULL);
    free(o);
    pthread_mutex_lock(&mu);
    struct syshandle *h = lookup(system);
    if (!h) { pthread_mutex_unlock(&mu); return E_HANDLE; }
    struct sys *s = &systems[h->sys];
    if (s->state == ST_STOPPED) { pthread_mutex_unlock(&mu); set_result(result, E_ALREADY_STOPPED, "already stopped"); return E_ALREADY_STOPPED; }
    if (strstr(s->name, fail_marker)) {
        pthread_mutex_unlock(&mu);
        set_result(result, E_OPERATION_TIMEOUT, "stand-in: injected failure");
        return E_OPERATION_TIMEOUT;
    }
    int start = !s->stopping;
    s->stopping = 1;
    int idx = h->sys;
    pthread_mutex_unlock(&mu);
    if (start) {
        struct stopper *st = malloc(sizeof *st);
        st->sys = idx;
        pthread_t t;
        pthread_create(&t, NULL, stop_thread, st);
        pthread_detach(t);
    }
    return E_PENDING;
}

HRESULT HcsShutdownComputeSystem(HANDLE system, const WCHAR *options, WCHAR **result) {
    return stop("HcsShutdownComputeSystem", system, options, result, "shutdown-fails");
}

HRESULT HcsTerminateComputeSystem(HANDLE system, const WCHAR *options, WCHAR **result) {
    return stop("HcsTerminateComputeSystem", system, options, result, "terminate-fails");
}

static HRESULT pause_resume(const char *op, HANDLE system, const WCHAR *options, int from, int to, uint32_t note) {
    char b[32], *o = u8(options);
    logcall(op, num(b, (intptr_t)system), o, NULL);
    free(o);
    pthread_mutex_lock(&mu);
    struct syshandle *h = lookup(system);
    if (!h) { pthread_mutex_unlock(&mu); return E_HANDLE; }
    struct sys *s = &systems[h->sys];
    if (s->state != from) { pthread_mutex_unlock(&mu); return E_INVALID_STATE; }
    s->state = to;
    pthread_mutex_unlock(&mu);
    fire_async(0, (int)(intptr_t)system, note, S_OK);
    return E_PENDING;
}

HRESULT HcsPauseComputeSystem(HANDLE system, const WCHAR *options, WCHAR **result) {
    (void)result;
    return pause_resume("HcsPauseComputeSystem", system, options, ST_RUNNING, ST_PAUSED, N_PAUSE_COMPLETED);
}

HRESULT HcsResumeComputeSystem(HANDLE system, const WCHAR *options, WCHAR **result) {
    (void)result;
    return pause_resume("HcsResumeComputeSystem", system, options, ST_PAUSED, ST_RUNNING, N_RESUME_COMPLETED);
}

HRESULT HcsGetComputeSystemProperties(HANDLE system, const WCHAR *query, WCHAR **props, WCHAR **result) {
    char b[32], *q = u8(query);
    logcall("HcsGetComputeSystemProperties", num(b, (intptr_t)system), q, NULL);
    pthread_mutex_lock(&mu);
    struct syshandle *h = lookup(system);
    if (!h) { pthread_mutex_unlock(&mu); free(q); return E_HANDLE; }
    char doc[8192];
    int n = snprintf(doc, sizeof doc, "{\"Id\":\"%s\",\"Name\":\"%s\",\"SystemType\":\"Container\",\"Owner\":\"docker\"",
                     systems[h->sys].name, systems[h->sys].name);
    if (strstr(q, "\"Statistics\"")) {
        n += snprintf(doc + n, sizeof doc - n,
                      ",\"Statistics\":{\"Timestamp\":\"2017-12-07T20:52:14.0000001Z\",\"Uptime100ns\":12345,"
                      "\"Memory\":{\"MemoryUsageCommitBytes\":4096},\"Processor\":{\"TotalRuntime100ns\":77},"
                      "\"Storage\":{},\"Network\":[{\"BytesSent\":9,\"EndpointId\":\"ep\"}]}");
    }
    if (strstr(q, "\"ProcessList\"")) {
        n += snprintf(doc + n, sizeof doc - n, ",\"ProcessList\":[");
        int first = 1;
        for (int i = 0; i < MAX; i++)
            if (procs[i].used && procs[i].sys == h->sys && !procs[i].exited) {
                n += snprintf(doc + n, sizeof doc - n, "%s{\"ImageName\":\"%s\",\"ProcessId\":%u,\"CreateTimestamp\":\"2017-12-07T20:52:14Z\"}",
                              first ? "" : ",", procs[i].cmd, procs[i].pid);
                first = 0;
            }
        n += snprintf(doc + n, sizeof doc - n, "]");
    }
    snprintf(doc + n, sizeof doc - n, "}");
    pthread_mutex_unlock(&mu);
    free(q);
    *props = wdup(doc);
    (void)result;
    return S_OK;
}

/* ------------------------------------------------------------------ processes */

typedef struct {
    uint32_t ProcessId;
    uint32_t Reserved;
    HANDLE StdInput;
    HANDLE StdOutput;
    HANDLE StdError;
} HCS_PROCESS_INFORMATION;

static struct proc *plookup(HANDLE h) {
    intptr_t i = (intptr_t)h - PROC_BASE;
    if (i < 0 || i >= MAX || !procs[i].used || procs[i].closed) return NULL;
    return &procs[i];
}

/* Frees the control pipe once nobody can use it: exited (no reader) and closed (no writer
 * through HCS calls). Caller holds mu; every writer checks `exited` under mu. */
static void maybe_release(struct proc *p) {
    if (p->exited && p->closed && p->ctl[0] >= 0) {
        close(p->ctl[0]);
        close(p->ctl[1]);
        p->ctl[0] = p->ctl[1] = -1;
    }
}

static void finish(int idx, uint32_t code) {
    struct proc *p = &procs[idx];
    if (p->out_w >= 0) close(p->out_w);
    if (p->err_w >= 0) close(p->err_w);
    if (p->in_r >= 0) close(p->in_r);
    pthread_mutex_lock(&mu);
    p->out_w = p->err_w = p->in_r = -1;
    p->exited = 1;
    p->exit_code = code;
    int fire = !p->closed && p->cb != NULL;
    if (fire && systems[p->sys].stopping && strstr(systems[p->sys].name, "late-exec-exits")) {
        /* stop_thread reports this exit after the system's (see there). */
        p->deferred = 1;
        fire = 0;
    } else if (!fire) {
        p->notify_pending = 1;
    }
    maybe_release(p);
    pthread_mutex_unlock(&mu);
    if (fire) fire_async(1, PROC_BASE + idx, N_PROCESS_EXITED, S_OK);
}

static void write_all(int fd, const char *s, size_t n) {
    while (fd >= 0 && n > 0) {
        ssize_t w = write(fd, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

/* Reads whatever stdin still holds without blocking, copying it to stdout. */
static void drain_stdin(struct proc *p) {
    if (p->in_r < 0) return;
    fcntl(p->in_r, F_SETFL, fcntl(p->in_r, F_GETFL) | O_NONBLOCK);
    char buf[4096];
    ssize_t n;
    while ((n = read(p->in_r, buf, sizeof buf)) > 0) write_all(p->out_w, buf, (size_t)n);
}

static void *proc_thread(void *arg) {
    int idx = (int)(intptr_t)arg;
    struct proc *p = &procs[idx];
    if (strncmp(p->cmd, "exit ", 5) == 0) {
        write_all(p->out_w, "out\n", 4);
        write_all(p->err_w, "err\n", 4);
        finish(idx, (uint32_t)atoi(p->cmd + 5));
        return NULL;
    }
    /* Like HCS, the process's stdin ends only when CloseHandle(StdIn) arrives: the host
     * closing its end of the pipe is not enough (hcsshim #1899). */
    int cat = strcmp(p->cmd, "cat") == 0;
    int host_closed = 0;
    for (;;) {
        int watch_in = cat && !host_closed && p->in_r >= 0;
        struct pollfd fds[2] = {{p->ctl[0], POLLIN, 0}, {watch_in ? p->in_r : -1, POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) continue;
        if (fds[0].revents & POLLIN) {
            char c = 0;
            if (read(p->ctl[0], &c, 1) == 1) {
                if (c == 'k') { finish(idx, 1); return NULL; }
                if (c == 'c' && cat) { drain_stdin(p); finish(idx, 0); return NULL; }
            }
        }
        if (watch_in && (fds[1].revents & (POLLIN | POLLHUP))) {
            char buf[4096];
            ssize_t n = read(p->in_r, buf, sizeof buf);
            if (n <= 0) host_closed = 1;
            else write_all(p->out_w, buf, (size_t)n);
        }
    }
}

/* The command: CommandLine, or the CommandArgs joined by spaces (no escapes in tests). */
static void extract_cmd(const char *params, char *out, size_t len) {
    size_t i = 0;
    const char *k = strstr(params, "\"CommandLine\":\"");
    if (k) {
        k += strlen("\"CommandLine\":\"");
        while (k[0] && k[0] != '"' && i + 1 < len) out[i++] = *k++;
    } else if ((k = strstr(params, "\"CommandArgs\":["))) {
        k += strlen("\"CommandArgs\":[");
        for (; k[0] && k[0] != ']' && i + 1 < len; k++) {
            if (k[0] == '"') continue;
            out[i++] = k[0] == ',' ? ' ' : k[0];
        }
    }
    out[i] = 0;
}

HRESULT HcsCreateProcess(HANDLE system, const WCHAR *params, HCS_PROCESS_INFORMATION *info, HANDLE *process, WCHAR **result) {
    char b[32], c[32], *prm = u8(params);
    char cmd[256];
    extract_cmd(prm, cmd, sizeof cmd);
    pthread_mutex_lock(&mu);
    struct syshandle *h = lookup(system);
    if (!h) { pthread_mutex_unlock(&mu); free(prm); return E_HANDLE; }
    if (systems[h->sys].state != ST_RUNNING || strcmp(cmd, "fail-create") == 0) {
        int stopped = systems[h->sys].state != ST_RUNNING;
        pthread_mutex_unlock(&mu);
        logcall("HcsCreateProcess", num(b, (intptr_t)system), prm, "=error", NULL);
        free(prm);
        HRESULT hr = stopped ? E_INVALID_STATE : E_FILE_NOT_FOUND;
        set_result(result, hr, stopped ? "The requested operation for attach namespace failed." : "The system cannot find the file specified.");
        return hr;
    }
    int idx = -1;
    for (int i = 0; i < MAX; i++) if (!procs[i].used) { idx = i; break; }
    struct proc *p = &procs[idx];
    memset(p, 0, sizeof *p);
    p->used = 1;
    p->sys = h->sys;
    p->pid = next_pid++;
    snprintf(p->cmd, sizeof p->cmd, "%s", cmd);
    p->in_r = p->out_w = p->err_w = -1;
    pipe2(p->ctl, O_CLOEXEC);
    int host[3] = {0, 0, 0}, fds[2];
    if (strstr(prm, "\"CreateStdInPipe\":true") && pipe2(fds, O_CLOEXEC) == 0) { p->in_r = fds[0]; host[0] = fds[1]; }
    if (strstr(prm, "\"CreateStdOutPipe\":true") && pipe2(fds, O_CLOEXEC) == 0) { host[1] = fds[0]; p->out_w = fds[1]; }
    if (strstr(prm, "\"CreateStdErrPipe\":true") && pipe2(fds, O_CLOEXEC) == 0) { host[2] = fds[0]; p->err_w = fds[1]; }
    pthread_mutex_unlock(&mu);
    info->ProcessId = p->pid;
    info->Reserved = 0;
    info->StdInput = (HANDLE)(intptr_t)host[0];
    info->StdOutput = (HANDLE)(intptr_t)host[1];
    info->StdError = (HANDLE)(intptr_t)host[2];
    *process = (HANDLE)(intptr_t)(PROC_BASE + idx);
    logcall("HcsCreateProcess", num(b, (intptr_t)system), prm, num(c, PROC_BASE + idx), NULL);
    free(prm);
    pthread_t t;
    pthread_create(&t, NULL, proc_thread, (void *)(intptr_t)idx);
    pthread_detach(t);
    return S_OK;
}

HRESULT HcsRegisterProcessCallback(HANDLE process, notify_cb cb, void *ctx, HANDLE *cbh) {
    char b[32], c[32];
    pthread_mutex_lock(&mu);
    struct proc *p = plookup(process);
    int fire = 0;
    if (p) {
        p->cb = cb; p->ctx = ctx; p->cb_handle = 3000 + next_cb++;
        *cbh = (HANDLE)(intptr_t)p->cb_handle;
        fire = p->notify_pending;
        p->notify_pending = 0;
    }
    pthread_mutex_unlock(&mu);
    logcall("HcsRegisterProcessCallback", num(b, (intptr_t)process), p ? num(c, p->cb_handle) : "none", NULL);
    if (!p) return E_HANDLE;
    if (fire) fire_async(1, (int)(intptr_t)process, N_PROCESS_EXITED, S_OK);
    return S_OK;
}

HRESULT HcsUnregisterProcessCallback(HANDLE cbh) {
    char b[32];
    logcall("HcsUnregisterProcessCallback", num(b, (intptr_t)cbh), NULL);
    pthread_mutex_lock(&mu);
    for (int i = 0; i < MAX; i++)
        if (procs[i].used && procs[i].cb_handle == (intptr_t)cbh) procs[i].cb = NULL;
    pthread_mutex_unlock(&mu);
    return S_OK;
}

HRESULT HcsTerminateProcess(HANDLE process, WCHAR **result) {
    char b[32];
    logcall("HcsTerminateProcess", num(b, (intptr_t)process), NULL);
    pthread_mutex_lock(&mu);
    struct proc *p = plookup(process);
    HRESULT hr = S_OK;
    if (!p) hr = E_HANDLE;
    else if (p->exited) hr = E_ELEMENT_NOT_FOUND;
    else { ssize_t w = write(p->ctl[1], "k", 1); (void)w; }
    pthread_mutex_unlock(&mu);
    if (hr < 0) set_result(result, hr, "process gone");
    return hr;
}

HRESULT HcsGetProcessProperties(HANDLE process, WCHAR **props, WCHAR **result) {
    char b[32], doc[256];
    logcall("HcsGetProcessProperties", num(b, (intptr_t)process), NULL);
    pthread_mutex_lock(&mu);
    struct proc *p = plookup(process);
    if (p)
        snprintf(doc, sizeof doc, "{\"ProcessId\":%u,\"Exited\":%s,\"ExitCode\":%u,\"LastWaitResult\":0}",
                 p->pid, p->exited ? "true" : "false", p->exit_code);
    pthread_mutex_unlock(&mu);
    (void)result;
    if (!p) return E_HANDLE;
    *props = wdup(doc);
    return S_OK;
}

HRESULT HcsModifyProcess(HANDLE process, const WCHAR *settings, WCHAR **result) {
    char b[32], *s = u8(settings);
    logcall("HcsModifyProcess", num(b, (intptr_t)process), s, NULL);
    pthread_mutex_lock(&mu);
    struct proc *p = plookup(process);
    HRESULT hr = S_OK;
    if (!p) hr = E_HANDLE;
    else if (p->exited) hr = E_INVALID_STATE;
    else if (strstr(s, "\"CloseHandle\"") && strstr(s, "\"StdIn\"")) { ssize_t w = write(p->ctl[1], "c", 1); (void)w; }
    pthread_mutex_unlock(&mu);
    free(s);
    if (hr < 0) set_result(result, hr, "invalid state");
    return hr;
}

HRESULT HcsCloseProcess(HANDLE process) {
    char b[32];
    logcall("HcsCloseProcess", num(b, (intptr_t)process), NULL);
    pthread_mutex_lock(&mu);
    struct proc *p = plookup(process);
    if (p) { p->closed = 1; p->cb = NULL; maybe_release(p); }
    pthread_mutex_unlock(&mu);
    return p ? S_OK : E_HANDLE;
}

/* ------------------------------------------------------------------ layers */

HRESULT NameToGuid(const WCHAR *name, uint8_t guid[16]) {
    char *n = u8(name);
    logcall("NameToGuid", n, NULL);
    /* The pair from the original's Create comment, in Windows memory layout. */
    static const uint8_t known[16] = {0x65, 0x5d, 0x95, 0x18, 0x5a, 0xd4, 0x7b, 0x55,
                                      0xbf, 0x1c, 0x49, 0xd6, 0xdf, 0xef, 0xc5, 0x26};
    if (strcmp(n, "65bf96e5760a09edf1790cb229e2dfb2dbd0fcdc0bf7451bae099106bfbfea0c") == 0) {
        memcpy(guid, known, 16);
    } else {
        size_t len = strlen(n);
        for (int i = 0; i < 16; i++) guid[i] = (uint8_t)(i * 17 + len);
    }
    free(n);
    return S_OK;
}
