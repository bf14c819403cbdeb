// One data queue's share of a source's round: the queue thread walks its chunks of the
// selected pages (chunk c travels on queue c % n), encodes each batch, hands it to a
// PageSender (placed runs first on rdma, then the batch) and ends with ROUND_END. The
// session around it (handshake, rounds, switchover, verdict) is source.cc's.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <vector>

#include "memory_preparer.h"
#include "ramshift/base/status.h"
#include "ramshift/guest/guest.h"
#include "ramshift/migration/source.h"
#include "ramshift/pipeline/batch_encoder.h"
#include "ramshift/pipeline/checksum.h"
#include "ramshift/pipeline/compression_governor.h"
#include "ramshift/transport/transport.h"
#include "rate_limiter.h"
#include "remote_memory.h"

namespace ramshift::migration {

// Per region, the pages of a round (ascending), or nullopt for every page.
using PageSelection = std::vector<std::optional<std::vector<uint64_t>>>;

// Per data queue counters; the control thread reads the atomics for progress.
struct alignas(64) QueueStats {
  std::atomic<uint64_t> pages_done{0};
  std::atomic<uint64_t> wire_bytes{0};
  pipeline::PageCounts counts;  // read after join
  Status status;                // read after join
};

// What every queue thread of a source shares. The governor, the limiter and the digest
// are used from all of them at once (each is safe for that); the rest is read only.
struct StreamShared {
  transport::Connection& conn;
  const SourceConfig& config;
  const std::vector<guest::Region>& regions;
  bool immutable;  // an image: pages may be referenced, not copied, while they are sent
  pipeline::CompressionGovernor& governor;
  RateLimiter& limiter;
  pipeline::MemoryDigest& digest;
  const std::atomic<bool>& abort;  // another thread failed: stop with kCancelled
  // Placement (rdma): our registration in progress, or null when raw pages always travel
  // inside the batch; and the destination's keys so far.
  MemoryPreparer* local_prep;
  const RemoteMemory* remote;
};

// Folds queue threads' results into one: the first failure, except that a queue which
// stopped because another failed first (kCancelled, StreamShared::abort) yields to one that
// says why.
void keep_first_cause(Status& first, const Status& queue_status);

// Sends data queue `q`'s chunks of `selection` in round `round` (on transport queue q + 1),
// then its ROUND_END, and flushes. `encoder` is the queue's for the whole migration (its
// XBZRLE cache outlives rounds); `stats` its counters.
Status stream_queue(const StreamShared& shared, uint32_t q, uint32_t round,
                    const PageSelection& selection, pipeline::BatchEncoder& encoder,
                    QueueStats& stats);

}  // namespace ramshift::migration
