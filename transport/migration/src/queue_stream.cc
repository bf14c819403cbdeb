#include "queue_stream.h"

#include <algorithm>
#include <optional>

#include "frame_io.h"
#include "ramshift/migration/page_sender.h"
#include "region_placement.h"

namespace ramshift::migration {
namespace {

using std::chrono::milliseconds;
using wire::FrameType;

// Whether the raw pages of [first, last) of region `r` may be placed: both sides have
// registered them. A failed local registration ends the migration (its message says why).
Result<bool> can_place(const StreamShared& sh, uint32_t r, uint64_t first, uint64_t last) {
  if (!sh.local_prep) return false;
  const uint64_t ps = sh.config.page_size;
  if (!sh.local_prep->ready(r, first * ps, last * ps)) {
    RS_RETURN_IF_ERROR(sh.local_prep->status());
    return false;
  }
  return sh.remote->covers(r, first * ps, last * ps);
}

// Places a batch's raw runs (rdma) and sends the batch behind them, within the rate limit.
Status send_batch(const StreamShared& sh, PageSender& sender, uint32_t region,
                  const pipeline::BatchView& batch, std::span<const pipeline::Placement> placed,
                  QueueStats& st) {
  uint64_t placed_bytes = 0;
  for (const auto& p : placed) placed_bytes += p.bytes;
  sh.limiter.acquire(batch.bytes + wire::kFrameHeaderBytes + placed_bytes);
  const auto header = wire::frame_header(FrameType::kPageBatch, batch.segments);
  std::optional<RegionPlacement> map;
  if (placed_bytes > 0)
    map.emplace(*sh.remote, region, sh.regions[region].memory.data(),
                sh.local_prep->region_chunk_bytes(region), sh.config.page_size, sender.queue());
  auto sent = sender.send(header, batch.segments, placed, map ? &*map : nullptr);
  if (!sent && sent.status().code() == ErrorCode::kTimeout)
    return Status(ErrorCode::kTimeout, "peer did not accept a page_batch frame for 60000 ms");
  if (!sent) return sent.status();
  st.wire_bytes.fetch_add(*sent, std::memory_order_relaxed);
  return Status::ok();
}

}  // namespace

Status stream_queue(const StreamShared& sh, uint32_t q, uint32_t round,
                    const PageSelection& selection, pipeline::BatchEncoder& encoder,
                    QueueStats& st) {
  const uint32_t n = sh.config.queues;
  const size_t ps = sh.config.page_size;
  const transport::SendWait wait{milliseconds(60000), milliseconds(100), &sh.abort, {}};
  PageSender sender(sh.conn, q + 1, wait, wait);
  uint64_t batches = 0;
  const auto& regions = sh.regions;
  for (uint32_t r = 0; r < regions.size(); ++r) {
    const std::byte* base = regions[r].memory.data();
    const uint64_t pages = regions[r].memory.size() / ps;
    const uint64_t chunks = (pages + sh.config.batch_pages - 1) / sh.config.batch_pages;
    const std::vector<uint64_t>* list = selection[r] ? &*selection[r] : nullptr;
    size_t li = 0;  // position in `list`
    // Chunk c always travels on queue c % n, so each page meets the same XBZRLE cache.
    for (uint64_t c = q; c < chunks; c += n) {
      if (sh.abort.load(std::memory_order_relaxed))
        return Status(ErrorCode::kCancelled, "cancelled");
      uint64_t first = c * sh.config.batch_pages;
      uint64_t last = std::min(pages, first + sh.config.batch_pages);
      size_t list_begin = 0, list_end = 0;
      if (list) {  // the selected pages of this chunk: a slice of the sorted list
        while (li < list->size() && (*list)[li] < first) ++li;
        list_begin = li;
        while (li < list->size() && (*list)[li] < last) ++li;
        list_end = li;
        if (list_begin == list_end) continue;
      }
      pipeline::BatchPolicy policy;
      policy.skip_zero = round == 0;  // a fresh destination is zero-filled
      policy.compress = sh.governor.should_compress();
      policy.cache_insert = round > 0;
      policy.zero_copy = sh.immutable;
      RS_ASSIGN_OR_RETURN(policy.place_raw, can_place(sh, r, first, last));
      const auto encode_start = pipeline::CompressionGovernor::Clock::now();
      encoder.begin(r, round, policy);
      uint64_t handled = 0;
      // Each page's digest entry is refreshed right after the encoder read it (cache-hot).
      if (list) {
        for (size_t i = list_begin; i < list_end; ++i) {
          encoder.add((*list)[i], base + (*list)[i] * ps);
          sh.digest.update_page(r, (*list)[i], regions[r].memory);
        }
        handled = list_end - list_begin;
      } else {
        for (uint64_t p = first; p < last; ++p) {
          encoder.add(p, base + p * ps);
          sh.digest.update_page(r, p, regions[r].memory);
        }
        handled = last - first;
      }
      auto batch = encoder.finish();
      const auto encode_time = pipeline::CompressionGovernor::Clock::now() - encode_start;
      uint64_t wire = batch.bytes;
      for (const auto& p : encoder.placements()) wire += p.bytes;
      if (!batch.empty()) {
        RS_RETURN_IF_ERROR(send_batch(sh, sender, r, batch, encoder.placements(), st));
        ++batches;
      }
      st.counts += encoder.counts();
      st.pages_done.fetch_add(handled, std::memory_order_relaxed);
      const pipeline::PageCounts& kinds = encoder.counts();
      const uint64_t carried = (kinds.raw + kinds.zstd + kinds.placed + kinds.xbzrle) * ps;
      sh.governor.record({policy.compress, q, handled * ps, carried, wire, encode_time});
    }
  }
  auto end =
      send_frame(sh.conn, q + 1, FrameType::kRoundEnd,
                 wire::encode(wire::RoundEnd{round, q, batches}), milliseconds(60000), &sh.abort);
  if (!end) return end.status();
  st.wire_bytes.fetch_add(*end, std::memory_order_relaxed);
  return sh.conn.flush(q + 1, milliseconds(60000));
}

void keep_first_cause(Status& first, const Status& queue_status) {
  if (queue_status.is_ok()) return;
  if (first.is_ok() ||
      (first.code() == ErrorCode::kCancelled && queue_status.code() != ErrorCode::kCancelled))
    first = queue_status;
}

}  // namespace ramshift::migration
