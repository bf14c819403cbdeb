/* ramshift.h: the C API of libramshift, for VMM authors who embed the migration engine.
 *
 * The source hands the engine its guest-memory regions and callbacks (dirty log, pause,
 * resume, device state); the destination hands it its own memory for the same regions and
 * gets the device state back. Pages travel over several parallel queues, compressed where
 * it pays and checksummed, and the destination checks a digest of every page before it
 * takes the guest over (docs/user-guide.md, "Embedding").
 *
 * Conventions:
 *   - Every handle is opaque, made by *_new and released by *_free (NULL is allowed there).
 *   - Functions that can fail return an int: RAMSHIFT_OK (0) or a negative ramshift_error.
 *     *_error() then gives a message for a person: what was wrong and what to do. The
 *     string stays valid until the next call on the same handle.
 *   - A handle is used by one thread at a time, except *_cancel(), which any thread may
 *     call while *_migrate() / *_accept() runs.
 *   - Memory regions: page-aligned (4096 bytes), a whole number of pages; the caller keeps
 *     them mapped until the handle is freed. Sizes are in bytes.
 *   - Transport URIs: tcp://HOST:PORT (and rdma://HOST:PORT where the library was built with
 *     verbs). Port 0 on the destination picks a free port; ramshift_destination_uri() says
 *     which.
 * The library is C++ inside; nothing here throws or exits the process.
 */
#ifndef RAMSHIFT_RAMSHIFT_H
#define RAMSHIFT_RAMSHIFT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RAMSHIFT_API __attribute__((visibility("default")))
#else
#define RAMSHIFT_API
#endif

/* The API's version: grows when functions are added; an existing one never changes. */
#define RAMSHIFT_API_VERSION 1

/* What failed, for a program to act on; the message says the rest. */
enum ramshift_error {
  RAMSHIFT_OK = 0,
  RAMSHIFT_E_INVALID = -1,   /* bad argument, option value or call order */
  RAMSHIFT_E_NOT_FOUND = -2, /* a device or peer that does not exist */
  RAMSHIFT_E_IO = -3,        /* a system call failed */
  RAMSHIFT_E_NO_SPACE = -4,  /* memory or disk full */
  RAMSHIFT_E_ADDRESS_IN_USE = -5,
  RAMSHIFT_E_UNREACHABLE = -6,  /* the destination refused or could not be reached */
  RAMSHIFT_E_DISCONNECTED = -7, /* the peer went away */
  RAMSHIFT_E_PROTOCOL = -8,     /* the peer broke the protocol */
  RAMSHIFT_E_CORRUPT = -9,      /* a checksum or the final digest did not match */
  RAMSHIFT_E_TIMEOUT = -10,     /* includes a guest that never converged */
  RAMSHIFT_E_MISMATCH = -11,    /* both valid but they disagree (region sizes, versions) */
  RAMSHIFT_E_CANCELLED = -12,   /* *_cancel() on either end */
  RAMSHIFT_E_CALLBACK = -13,    /* a callback of the caller returned an error */
  RAMSHIFT_E_INTERNAL = -14
};

/* "1.2.3", the library's release. */
RAMSHIFT_API const char* ramshift_version(void);
/* A short name for an error code ("disconnected"); "unknown" for anything else. */
RAMSHIFT_API const char* ramshift_error_name(int error);

/* Where the library logs (standard error): RAMSHIFT_LOG_WARN unless set. */
enum ramshift_log_level {
  RAMSHIFT_LOG_DEBUG = 0,
  RAMSHIFT_LOG_INFO = 1,
  RAMSHIFT_LOG_WARN = 2,
  RAMSHIFT_LOG_ERROR = 3,
  RAMSHIFT_LOG_OFF = 4
};
RAMSHIFT_API void ramshift_set_log_level(int level);

/* ---- Source ---------------------------------------------------------------------------- */

/* What the engine asks of the running VMM. All are called from the thread inside
 * ramshift_source_migrate(); each returns 0, or non-zero to fail the migration (the guest
 * then keeps running on the source). */
struct ramshift_source_callbacks {
  void* opaque; /* passed to every callback */
  /* Optional: start recording writes to guest memory (before the first page is read). */
  int (*start_dirty_log)(void* opaque);
  /* The pages of region `region` written since the previous call (or since
   * start_dirty_log), and clear that record: set bit i of `bitmap` (bit i % 64 of word
   * i / 64) for page i. `bitmap` holds (pages + 63) / 64 words, all zero on entry. NULL: the
   * memory never changes while it is copied (a paused guest), and one round is sent. */
  int (*get_dirty_log)(void* opaque, uint32_t region, uint64_t* bitmap, uint64_t pages);
  /* Stop the vCPUs; memory must not change until resume(). Optional for a paused guest. */
  void (*pause)(void* opaque);
  /* Run the vCPUs again: the migration failed or was cancelled and the guest stays here, or
   * a switch-over ran late and was taken back before the limit (the migration goes on with
   * more rounds, dirty logging still on, and pauses again later). */
  void (*resume)(void* opaque);
  /* Optional: the device state, called with the guest paused, once per switch-over (again
   * after one taken back). Set *data and *size to a buffer the caller keeps valid until
   * ramshift_source_migrate() returns or the next call. */
  int (*save_device_state)(void* opaque, const void** data, size_t* size);
};

typedef struct ramshift_source ramshift_source;

RAMSHIFT_API ramshift_source* ramshift_source_new(void);
RAMSHIFT_API void ramshift_source_free(ramshift_source* source);
/* Adds a guest-memory region; the destination receives them in the order added. */
RAMSHIFT_API int ramshift_source_add_region(ramshift_source* source, const char* name, void* memory,
                                            uint64_t bytes);
RAMSHIFT_API int ramshift_source_set_callbacks(ramshift_source* source,
                                               const struct ramshift_source_callbacks* callbacks);
/* Sets an option by the name of the `ramshift send` flag it matches, value as on the command
 * line: queues, codec, batch-size (bytes), max-bandwidth, xbzrle-cache, zstd-level,
 * downtime-limit (ms), max-rounds, auto-converge (on|off), verify (transfer|full),
 * connect-timeout and peer-timeout (seconds), tls-dir, tls-psk, tls-authz, tls-ktls (TLS 1.3 on
 * tcp://, docs/security.md). RAMSHIFT_E_INVALID for an unknown name or value. */
RAMSHIFT_API int ramshift_source_set_option(ramshift_source* source, const char* name,
                                            const char* value);
/* Migrates the guest to the destination listening at `uri`; blocks until the end. 0: the
 * destination verified every page and runs the guest now (the source must not resume it).
 * Otherwise the guest was resumed here, or never paused, unless the connection broke during
 * the hand-off itself (the message says so: the guest is then paused on both sides). */
RAMSHIFT_API int ramshift_source_migrate(ramshift_source* source, const char* uri);
/* Asks a running ramshift_source_migrate() to stop (it returns RAMSHIFT_E_CANCELLED soon). */
RAMSHIFT_API void ramshift_source_cancel(ramshift_source* source);
RAMSHIFT_API const char* ramshift_source_error(const ramshift_source* source);
/* The last migration's report as one JSON object (the keys of `ramshift send --json`). */
RAMSHIFT_API const char* ramshift_source_report_json(const ramshift_source* source);

/* ---- Destination ----------------------------------------------------------------------- */

typedef struct ramshift_destination ramshift_destination;

RAMSHIFT_API ramshift_destination* ramshift_destination_new(void);
RAMSHIFT_API void ramshift_destination_free(ramshift_destination* destination);
/* Adds the caller's memory for the next region of the source, in the source's order. The
 * source's regions must have the same sizes (RAMSHIFT_E_MISMATCH otherwise). The memory is
 * overwritten; no region added: the guest is received into memory of the library's own
 * (to check a migration) and dropped when the handle is freed. */
RAMSHIFT_API int ramshift_destination_add_region(ramshift_destination* destination,
                                                 const char* name, void* memory, uint64_t bytes);
/* Options by the name of the `ramshift receive` flag: handshake-timeout, peer-timeout
 * (seconds), tls-dir, tls-psk, tls-authz, tls-ktls (before listen; docs/security.md). */
RAMSHIFT_API int ramshift_destination_set_option(ramshift_destination* destination,
                                                 const char* name, const char* value);
/* Starts listening at `uri` (tcp://0.0.0.0:7000, tcp://127.0.0.1:0). */
RAMSHIFT_API int ramshift_destination_listen(ramshift_destination* destination, const char* uri);
/* The address listened on, with the port chosen for port 0; "" before listen. */
RAMSHIFT_API const char* ramshift_destination_uri(const ramshift_destination* destination);
/* Waits up to `timeout_ms` (0: forever) for a source and serves one migration; blocks until
 * the end. 0: every page is in the caller's memory, verified, and the source has let the
 * guest go: start it here now, with the device state below. Otherwise the memory is not a
 * guest to run and the source keeps (or resumes) its own. */
RAMSHIFT_API int ramshift_destination_accept(ramshift_destination* destination,
                                             uint32_t timeout_ms);
/* The device state the source sent, after a successful accept (size 0 if it sent none).
 * Valid until the next accept or free. */
RAMSHIFT_API int ramshift_destination_device_state(const ramshift_destination* destination,
                                                   const void** data, size_t* size);
RAMSHIFT_API void ramshift_destination_cancel(ramshift_destination* destination);
RAMSHIFT_API const char* ramshift_destination_error(const ramshift_destination* destination);
RAMSHIFT_API const char* ramshift_destination_report_json(const ramshift_destination* destination);

#ifdef __cplusplus
}
#endif

#endif /* RAMSHIFT_RAMSHIFT_H */
