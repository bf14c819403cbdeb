#include "verify.h"

#include <fmt/format.h>

#include <algorithm>

#include "frame_io.h"

namespace ramshift::migration {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using wire::FrameType;

pipeline::FullDigest hash_guest_memory(const std::vector<std::span<const std::byte>>& regions,
                                       const std::vector<uint64_t>& region_bytes,
                                       uint32_t page_size, uint32_t chunk_pages) {
  // All cores: the guest is paused, so this pass is downtime and nothing else runs.
  return pipeline::hash_memory(regions, region_bytes, page_size, chunk_pages, 0);
}

Result<MemoryComparison> compare_guest_memory(const std::vector<std::span<const std::byte>>& memory,
                                              const std::vector<uint64_t>& region_bytes,
                                              const wire::Digest& digest, uint32_t page_size,
                                              uint32_t chunk_pages) {
  auto mine = hash_guest_memory(memory, region_bytes, page_size, chunk_pages);
  // The shapes first: a digest of another shape is a protocol error, not a repair.
  for (size_t r = 0; r < mine.chunks.size(); ++r)
    if (r >= digest.regions.size() || digest.regions[r].size() != mine.chunks[r].size())
      return Status(ErrorCode::kProtocol, "digest of another shape than this guest's memory");
  if (digest.regions.size() != mine.chunks.size())
    return Status(ErrorCode::kProtocol, "digest covers another number of regions");
  return MemoryComparison{mine.pages, differing_chunks(mine.chunks, digest.regions)};
}

std::vector<wire::ChunkRef> differing_chunks(const std::vector<std::vector<uint64_t>>& mine,
                                             const std::vector<std::vector<uint64_t>>& theirs) {
  std::vector<wire::ChunkRef> out;
  for (uint32_t r = 0; r < mine.size() && r < theirs.size(); ++r)
    for (uint64_t c = 0; c < mine[r].size() && c < theirs[r].size(); ++c)
      if (mine[r][c] != theirs[r][c]) out.push_back({r, c});
  return out;
}

PageSelection pages_of_chunks(const std::vector<wire::ChunkRef>& chunks,
                              const std::vector<uint64_t>& region_bytes, uint32_t page_size,
                              uint32_t chunk_pages) {
  PageSelection sel(region_bytes.size(), std::vector<uint64_t>{});
  for (const auto& c : chunks) {
    const uint64_t pages = (region_bytes[c.region_id] + page_size - 1) / page_size;
    const uint64_t first = c.chunk * chunk_pages;
    for (uint64_t p = first; p < std::min(pages, first + chunk_pages); ++p)
      sel[c.region_id]->push_back(p);
  }
  for (auto& s : sel) {
    std::sort(s->begin(), s->end());
    s->erase(std::unique(s->begin(), s->end()), s->end());
  }
  return sel;
}

uint64_t count_pages(const PageSelection& selection) {
  uint64_t n = 0;
  for (const auto& s : selection) n += s ? s->size() : 0;
  return n;
}

Result<Verdict> await_verdict(transport::Connection& conn, SourceSession& session,
                              milliseconds timeout,
                              const std::function<Status(std::span<const std::byte>)>& on_keys,
                              const CancelToken* cancel,
                              std::optional<Clock::time_point> give_up_at) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    // Slices of 100 ms, so a cancel is noticed while the destination hashes (as
    // await_control_frame does); up to the guard's deadline at most.
    if (cancel_requested(cancel) && session.cancel().is_ok()) return cancel->status("source");
    const auto now = Clock::now();
    // Typed as the abort the source sends next, never as a verdict: a caller that missed
    // `overdue` fails on it instead of handing the guest over.
    if (give_up_at && now >= *give_up_at) return Verdict{FrameType::kSwitchoverAbort, {}, true};
    auto left = std::chrono::duration_cast<milliseconds>(deadline - now);
    auto slice = std::clamp(left, milliseconds(0), milliseconds(100));
    if (give_up_at) slice = std::min(slice, std::chrono::ceil<milliseconds>(*give_up_at - now));
    auto f = receive_frame(conn, 0, slice);
    if (!f && f.status().code() == ErrorCode::kTimeout && Clock::now() < deadline) continue;
    if (!f) {
      if (f.status().code() == ErrorCode::kTimeout)
        return Status(ErrorCode::kTimeout, fmt::format("destination sent no verdict on the "
                                                       "digest within {} s",
                                                       timeout.count() / 1000));
      return f.status().with_context("waiting for commit");
    }
    if (f->type == FrameType::kMemoryKeys) {
      RS_RETURN_IF_ERROR(on_keys(f->body));
      continue;
    }
    if (f->type == FrameType::kError) {
      session.fail(SourceEvent::kErrorReceived);
      return peer_error(f->body, "destination");
    }
    if (f->type != FrameType::kCommit && f->type != FrameType::kVerifyMismatch &&
        f->type != FrameType::kSwitchoverAborted)
      return Status(ErrorCode::kProtocol,
                    fmt::format("expected the destination's verdict on the digest, got {}",
                                wire::frame_type_name(f->type)));
    if (f->type != FrameType::kVerifyMismatch)
      RS_RETURN_IF_ERROR(wire::expect_empty(f->type, f->body));
    RS_RETURN_IF_ERROR(session.advance(*source_received_event(f->type)));
    return Verdict{f->type, std::vector<std::byte>(f->body.begin(), f->body.end())};
  }
}

}  // namespace ramshift::migration
