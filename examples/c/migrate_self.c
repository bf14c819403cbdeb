/* migrate_self: a program that live-migrates its own memory with libramshift.
 *
 * A "guest" here is a 64 MiB region and a thread that keeps writing to it (a vCPU). The
 * source side hands the region and the callbacks a VMM would give (dirty log, pause, resume,
 * device state) to ramshift_source_migrate(); a second thread plays the destination: it
 * listens on tcp://127.0.0.1 (a free port), receives into memory of its own that starts out
 * full of garbage, and gets the device state back. Then the program checks what a VMM would
 * rely on: the destination's memory equals the paused source's byte for byte, and the
 * device state arrived intact.
 *
 *   cc migrate_self.c $(pkg-config --cflags --libs ramshift) -lpthread -o migrate_self
 *   ./migrate_self [MiB]        exit 0: migrated and verified; 1: it was not
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, nanosleep under -std=c11 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <ramshift/ramshift.h>

#define PAGE 4096u

/* The running guest: memory, a write record for the dirty log, a paused flag. */
struct guest {
  unsigned char* memory;
  uint64_t pages;
  pthread_mutex_t lock; /* held for each write, and to read-and-clear the log */
  pthread_cond_t wake;
  uint64_t* dirty; /* one bit per page written since the last get_dirty_log */
  int logging;
  int paused;
  int stop;
  uint64_t writes;
  pthread_t vcpu;
  char device_state[64];
};

static void* vcpu_main(void* arg) {
  struct guest* g = arg;
  uint64_t seed = 88172645463325252ull;
  for (;;) {
    pthread_mutex_lock(&g->lock);
    while (g->paused && !g->stop) pthread_cond_wait(&g->wake, &g->lock);
    if (g->stop) {
      pthread_mutex_unlock(&g->lock);
      return NULL;
    }
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17; /* xorshift64 */
    const uint64_t page = seed % g->pages;
    memset(g->memory + page * PAGE, (int)(g->writes & 0xff), 64); /* a write to the page */
    memcpy(g->memory + page * PAGE + 64, &g->writes, sizeof g->writes);
    if (g->logging) g->dirty[page / 64] |= 1ull << (page % 64);
    g->writes++;
    pthread_mutex_unlock(&g->lock);
    /* About 40 MB/s of dirtied pages (one page per 100 us): a working set the link beats. */
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
}

/* ---- the callbacks a VMM gives the source -------------------------------------------- */

static int start_dirty_log(void* opaque) {
  struct guest* g = opaque;
  pthread_mutex_lock(&g->lock);
  memset(g->dirty, 0, (g->pages + 63) / 64 * 8);
  g->logging = 1;
  pthread_mutex_unlock(&g->lock);
  return 0;
}

static int get_dirty_log(void* opaque, uint32_t region, uint64_t* bitmap, uint64_t pages) {
  struct guest* g = opaque;
  if (region != 0 || pages != g->pages) return -1;
  pthread_mutex_lock(&g->lock);
  memcpy(bitmap, g->dirty, (pages + 63) / 64 * 8);
  memset(g->dirty, 0, (pages + 63) / 64 * 8);
  pthread_mutex_unlock(&g->lock);
  return 0;
}

static void pause_guest(void* opaque) {
  struct guest* g = opaque;
  pthread_mutex_lock(&g->lock); /* once we hold it, no write is half done */
  g->paused = 1;
  pthread_mutex_unlock(&g->lock);
}

static void resume_guest(void* opaque) {
  struct guest* g = opaque;
  pthread_mutex_lock(&g->lock);
  g->paused = 0;
  pthread_cond_broadcast(&g->wake);
  pthread_mutex_unlock(&g->lock);
}

static int save_device_state(void* opaque, const void** data, size_t* size) {
  struct guest* g = opaque;
  snprintf(g->device_state, sizeof g->device_state, "vcpu writes=%" PRIu64, g->writes);
  *data = g->device_state;
  *size = strlen(g->device_state) + 1;
  return 0;
}

/* ---- the destination, in a thread of its own ----------------------------------------- */

struct destination {
  ramshift_destination* handle;
  int rc;
};

static void* destination_main(void* arg) {
  struct destination* d = arg;
  d->rc = ramshift_destination_accept(d->handle, 30000);
  return NULL;
}

static void* map_pages(uint64_t bytes) {
  void* p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

int main(int argc, char** argv) {
  const uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 64;
  const uint64_t bytes = mib << 20;
  if (bytes == 0) {
    fprintf(stderr, "usage: %s [MiB]\n", argv[0]);
    return 2;
  }
  printf("libramshift %s\n", ramshift_version());

  /* The guest: half its pages hold data, half are zero (those need not travel). */
  struct guest g = {
      .pages = bytes / PAGE, .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};
  g.memory = map_pages(bytes);
  g.dirty = calloc((g.pages + 63) / 64, 8);
  unsigned char* there = map_pages(bytes);
  if (!g.memory || !g.dirty || !there) return 1;
  for (uint64_t p = 0; p < g.pages; p += 2) memset(g.memory + p * PAGE, (int)(p % 251) + 1, PAGE);
  memset(there, 0xAA, bytes); /* the destination's memory starts out as garbage */
  pthread_create(&g.vcpu, NULL, vcpu_main, &g);

  /* The destination: its own memory for the one region, listening on a free port. */
  struct destination d = {ramshift_destination_new(), -1};
  if (ramshift_destination_add_region(d.handle, "ram", there, bytes) != 0 ||
      ramshift_destination_listen(d.handle, "tcp://127.0.0.1:0") != 0) {
    fprintf(stderr, "destination: %s\n", ramshift_destination_error(d.handle));
    return 1;
  }
  pthread_t dest_thread;
  pthread_create(&dest_thread, NULL, destination_main, &d);

  /* The source: the region, the callbacks, two queues. */
  ramshift_source* src = ramshift_source_new();
  struct ramshift_source_callbacks cb = {
      .opaque = &g,
      .start_dirty_log = start_dirty_log,
      .get_dirty_log = get_dirty_log,
      .pause = pause_guest,
      .resume = resume_guest,
      .save_device_state = save_device_state,
  };
  int rc = ramshift_source_add_region(src, "ram", g.memory, bytes);
  if (rc == 0) rc = ramshift_source_set_callbacks(src, &cb);
  if (rc == 0) rc = ramshift_source_set_option(src, "queues", "2");
  if (rc == 0) rc = ramshift_source_migrate(src, ramshift_destination_uri(d.handle));
  if (rc != 0)
    fprintf(stderr, "source: %s (%s)\n", ramshift_source_error(src), ramshift_error_name(rc));
  pthread_join(dest_thread, NULL);
  if (d.rc != 0)
    fprintf(stderr, "destination: %s (%s)\n", ramshift_destination_error(d.handle),
            ramshift_error_name(d.rc));

  /* What the VMM relies on: the memory and the device state, exactly as the source left them
   * when it paused. The source guest is still paused (it was handed over). */
  int ok = rc == 0 && d.rc == 0;
  if (ok && memcmp(g.memory, there, bytes) != 0) {
    uint64_t first = 0;
    while (memcmp(g.memory + first * PAGE, there + first * PAGE, PAGE) == 0) first++;
    fprintf(stderr, "memory differs, first at page %" PRIu64 "\n", first);
    ok = 0;
  }
  const void* state = NULL;
  size_t state_size = 0;
  if (ok && (ramshift_destination_device_state(d.handle, &state, &state_size) != 0 ||
             state_size != strlen(g.device_state) + 1 ||
             memcmp(state, g.device_state, state_size) != 0)) {
    fprintf(stderr, "device state did not arrive intact\n");
    ok = 0;
  }
  if (ok)
    printf("migrated %" PRIu64 " MiB while the guest wrote %" PRIu64
           " times; memory and device state (\"%s\") verified\n",
           mib, g.writes, (const char*)state);
  else
    printf("%s\n", ramshift_source_report_json(src));

  pthread_mutex_lock(&g.lock);
  g.stop = 1;
  pthread_cond_broadcast(&g.wake);
  pthread_mutex_unlock(&g.lock);
  pthread_join(g.vcpu, NULL);
  ramshift_source_free(src);
  ramshift_destination_free(d.handle);
  munmap(g.memory, bytes);
  munmap(there, bytes);
  free(g.dirty);
  return ok ? 0 : 1;
}
