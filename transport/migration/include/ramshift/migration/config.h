// Configuration of the two ends of a migration. CLI flags map 1:1 onto these fields.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ramshift/base/cpu_affinity.h"
#include "ramshift/guest/guest.h"
#include "ramshift/migration/cancel.h"
#include "ramshift/migration/convergence.h"
#include "ramshift/pipeline/codec.h"
#include "ramshift/transport/transport.h"
#include "ramshift/transport/uri.h"

namespace ramshift::migration {

// What the destination's check before it commits proves (`send --verify`).
//   kTransfer  (default) the digest of what was sent: each side refreshes a page's hash as
//              it encodes or places the page, so the destination holds every page the
//              source sent, intact. It does NOT prove that the source sent every page the
//              guest wrote: a page the dirty tracker missed keeps the same stale hash on
//              both sides. Costs no pass over memory.
//   kFull      with the guest paused, both ends hash all their memory (all cores) and the
//              destination compares: it then holds the paused source's memory exactly.
//              Differing chunks are resent and counted (report `verify`), never accepted.
//              Costs a pass over memory on each side, inside the downtime.
enum class VerifyMode { kTransfer, kFull };
const char* verify_mode_name(VerifyMode mode);
Result<VerifyMode> parse_verify_mode(std::string_view text);

// The data queues every command uses unless told otherwise, from the host it runs on: one
// per core, at most 8. Each queue is a sender thread that encodes its own batches, so more
// queues than cores only adds contention (`doctor` warns about it), and beyond 8 none has been
// measured to pay (the wire allows 64).
uint32_t default_queues();

// How a live guest moves (`send --mode`).
//   kPrecopy   rounds while it runs, then a short pause for the rest (the default).
//   kPostcopy  paused at once and run on the destination, which fetches each page it
//              touches while the source pushes the rest (docs/protocol.md, Post-copy).
//   kHybrid    pre-copy until a round fails to halve what is left, the convergence policy
//              would throttle or fail, or --postcopy-after rounds; then post-copy. A guest
//              that converges switches over as pre-copy does (hybrid_switches()).
enum class MigrationMode { kPrecopy, kPostcopy, kHybrid };
const char* migration_mode_name(MigrationMode mode);
Result<MigrationMode> parse_migration_mode(std::string_view text);

struct SourceConfig {
  transport::Uri to;
  // Data queues (the connection has one more: queue 0 carries control frames).
  uint32_t queues = default_queues();
  pipeline::CodecConfig codec;
  uint32_t page_size = 4096;
  // Pages per batch; 0 = the transport's default, default_batch_pages(to.scheme, page_size).
  uint32_t batch_pages = 0;
  uint64_t bandwidth_limit = 0;  // bytes/s of wire traffic over all queues; 0 = unlimited
  // A limit that may change while the run goes (the control socket's set-bandwidth): when
  // set, it is read before every batch instead of bandwidth_limit (the caller stores the
  // starting value); 0 = unlimited. May be null.
  const std::atomic<uint64_t>* live_bandwidth_limit = nullptr;
  ConvergenceConfig convergence;  // live guests only
  std::chrono::milliseconds connect_timeout{10000};
  // Backend settings for the connection (TransportOptions::settings, e.g. "rdma-sq-depth").
  // The source receives only the destination's replies, so it connects with
  // ReceiveLoad::kReplies and a backend sizes its own receive buffers small (rdma: 64 KiB
  // slots); the destination's carry the pages.
  transport::BackendSettings transport_settings;
  // How long to wait for the destination's verdict after the last page.
  std::chrono::milliseconds verdict_timeout{600000};
  // A destination that stops answering without closing is given up after this long, in every
  // phase (TransportOptions::peer_timeout); a live guest then resumes here. Why 5 s: a LAN
  // retransmits a lost segment 4 times within it (Linux's 200 ms minimum RTO doubling:
  // 0.2 + 0.4 + 0.8 + 1.6 s), so a burst of loss survives, while a dead host is noticed in
  // about a downtime budget's worth of seconds, not after the OS's 15 minutes.
  std::chrono::milliseconds peer_timeout{5000};
  // Set by the caller to cancel the run from another thread (cancel.h); may be null.
  CancelToken* cancel = nullptr;
  VerifyMode verify = VerifyMode::kTransfer;     // --verify
  MigrationMode mode = MigrationMode::kPrecopy;  // --mode
  // --postcopy-after N: hybrid switches to post-copy after exactly N pre-copy rounds (or
  // sooner if the policy would throttle or fail); 0: by the rule above.
  uint32_t postcopy_after = 0;
  // Set (by the control socket's start-postcopy) to make a hybrid run go post-copy at the
  // end of the pre-copy round under way, whatever the rule above says; may be null.
  const std::atomic<bool>* postcopy_request = nullptr;
  // --cpus: data queue q's thread runs on queue_cpus[q % size] (pin_queue_thread); empty:
  // wherever the scheduler puts it.
  std::vector<uint32_t> queue_cpus;
};

// The batch size `--batch-pages` leaves to the transport, in pages of `page_size` bytes.
// - a backend that states a preferred batch (BackendTraits::preferred_batch_bytes; rdma:
//   1 MiB, 256 x 4 KiB pages, its reason is in rdma/src/backend_entry.h): that many bytes.
// - everything else: 64 pages (256 KiB for 4 KiB pages), at or above the 64 KiB where
//   perftest reaches line rate and small enough that 2 x 8 MiB of socket buffer holds dozens
//   of batches per queue.
uint32_t default_batch_pages(std::string_view scheme, uint32_t page_size);

struct DestinationConfig {
  std::string output_path;  // --guest-out; empty = keep in memory, verify only
  // --cpus: as SourceConfig::queue_cpus, for the receiving queue threads.
  std::vector<uint32_t> queue_cpus;
  // An embedder's guest (the C API): the pages land in its memory and it gets the device
  // state; output_path is then ignored. Null: the engine's own memory, and a live guest's
  // device state must be a synthetic guest's. Not owned; outlives the run.
  guest::DestinationGuest* guest = nullptr;
  bool overwrite = false;
  uint64_t expect_bytes = 0;  // --expect-size; 0 = accept any size
  std::chrono::milliseconds handshake_timeout{10000};
  // A live guest received: how long it runs here after the commit before it is verified
  // again and the command ends (0 = verify once, do not run it).
  std::chrono::milliseconds resume_for{2000};
  // Fault injection for tests: drop the connection right after sending COMMIT, as if this
  // host died there (the hand-off's one ambiguous moment).
  bool test_drop_after_commit = false;
  // Set by the caller to cancel the run from another thread (cancel.h); may be null. The
  // peer timeout is the listener's (TransportOptions::peer_timeout), set before accept.
  CancelToken* cancel = nullptr;
  // Called with the guest's memory, region by region, once the destination has verified it
  // and before a live guest may run here, so a test (or `receive --dump-guest`) can compare
  // it byte for byte with the paused source's. Runs on the control thread inside the
  // downtime; must not keep the spans. Post-copy: once the guest has run here and been
  // paused and checked at the end.
  std::function<void(const std::vector<std::span<const std::byte>>&)> inspect_memory;
};

}  // namespace ramshift::migration
