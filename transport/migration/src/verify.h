// `--verify full`: the pieces both ends share (docs/protocol.md, "Digest"). The source
// hashes its paused guest, the destination its memory, both with hash_guest_memory(); the
// destination lists the chunks that differ (VERIFY_MISMATCH) and the source resends every
// page of them as a repair round, until the two agree or kMaxVerifyRepairs is spent.
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <vector>

#include "queue_stream.h"
#include "ramshift/migration/session_state.h"
#include "ramshift/pipeline/full_digest.h"
#include "ramshift/transport/transport.h"
#include "ramshift/wire/frame.h"
#include "source_control.h"

namespace ramshift::migration {

// Why 3: one repair resends every page the first comparison found different; a second is
// needed only if memory changed under the comparison, which a paused guest must not do.
// A third that still differs means something rewrites memory (or corrupts it): fail.
inline constexpr uint32_t kMaxVerifyRepairs = 3;

// Every page of `regions` hashed on all cores, in the digest's chunks.
pipeline::FullDigest hash_guest_memory(const std::vector<std::span<const std::byte>>& regions,
                                       const std::vector<uint64_t>& region_bytes,
                                       uint32_t page_size, uint32_t chunk_pages);

// --verify full on the destination: `memory` hashed now against the source's `digest`. The
// pages hashed and the chunks that differ (none: equal); kProtocol when the digest has
// another shape than this memory (that is not a repair).
struct MemoryComparison {
  uint64_t pages = 0;
  std::vector<wire::ChunkRef> differing;
};
Result<MemoryComparison> compare_guest_memory(const std::vector<std::span<const std::byte>>& memory,
                                              const std::vector<uint64_t>& region_bytes,
                                              const wire::Digest& digest, uint32_t page_size,
                                              uint32_t chunk_pages);

// Chunks whose hashes differ; the shapes must already agree (MemoryDigest::compare's check).
std::vector<wire::ChunkRef> differing_chunks(const std::vector<std::vector<uint64_t>>& mine,
                                             const std::vector<std::vector<uint64_t>>& theirs);

// Every page of `chunks` (ascending per region), for a repair round.
PageSelection pages_of_chunks(const std::vector<wire::ChunkRef>& chunks,
                              const std::vector<uint64_t>& region_bytes, uint32_t page_size,
                              uint32_t chunk_pages);
uint64_t count_pages(const PageSelection& selection);

// The source's wait for the destination's verdict on a DIGEST: COMMIT (empty body) or, with
// --verify full, VERIFY_MISMATCH (its body); while a switch-over is being aborted also
// SWITCHOVER_ABORTED (a COMMIT that crossed the abort comes first). MEMORY_KEYS on the way go to
// `on_keys`; ERROR ends the session. Advances `session` by the frame received. With `give_up_at`,
// nothing received by then is `overdue` (the guard's deadline, switchover.h), not an error.
struct Verdict {
  wire::FrameType type;
  std::vector<std::byte> body;
  bool overdue = false;
};
Result<Verdict> await_verdict(transport::Connection& conn, SourceSession& session,
                              std::chrono::milliseconds timeout,
                              const std::function<Status(std::span<const std::byte>)>& on_keys,
                              const CancelToken* cancel,
                              std::optional<std::chrono::steady_clock::time_point> give_up_at = {});

}  // namespace ramshift::migration
