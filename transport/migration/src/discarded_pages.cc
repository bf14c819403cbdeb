#include "discarded_pages.h"

#include <fmt/format.h>

#include "ramshift/base/clock.h"
#include "ramshift/base/log.h"

namespace ramshift::migration {

Result<std::unique_ptr<DiscardedPages>> DiscardedPages::register_memory(
    std::vector<std::span<std::byte>> regions, const wire::RegionTable& table, uint32_t page_size) {
  std::unique_ptr<DiscardedPages> d(new DiscardedPages());
  for (const auto& r : table.regions) {
    const uint64_t n = wire::region_pages(r.bytes, page_size);
    d->region_pages_.push_back(n);
    d->absent_.emplace_back((n + 7) / 8, 0);
  }
  RS_ASSIGN_OR_RETURN(d->pages_, guest::MissingPages::register_memory(std::move(regions)));
  return d;
}

Result<uint64_t> DiscardedPages::drop(const std::vector<std::vector<uint8_t>>& pages) {
  if (!pages_) return Status(ErrorCode::kInternal, "dropping pages of memory handed over");
  if (pages.size() != absent_.size())
    return Status(ErrorCode::kInternal, "dropping pages: not one bitmap per region");
  // Runs of pages named and still present, the unit one drop call takes.
  std::vector<guest::PageRun> runs;
  uint64_t count = 0;
  for (uint32_t r = 0; r < pages.size(); ++r) {
    auto& absent = absent_[r];
    auto take = [&](uint64_t p) {
      const uint8_t bit = static_cast<uint8_t>(1u << (p % 8));
      if (!(pages[r][p / 8] & bit) || (absent[p / 8] & bit)) return false;
      absent[p / 8] |= bit;
      return true;
    };
    for (uint64_t i = 0; i < region_pages_[r];) {
      if (pages[r][i / 8] == 0 && i % 8 == 0) {  // most bytes name nothing
        i += 8;
        continue;
      }
      if (!take(i)) {
        ++i;
        continue;
      }
      uint64_t end = i + 1;
      while (end < region_pages_[r] && take(end)) ++end;
      runs.push_back({r, i, end - i});
      count += end - i;
      i = end;
    }
  }
  RS_RETURN_IF_ERROR(pages_->drop(runs));
  dropped_ += count;
  ++drops_;
  return count;
}

Status take_discard(std::span<const std::byte> body, const DiscardContext& c,
                    std::unique_ptr<DiscardedPages>& discarded) {
  RS_RETURN_IF_ERROR(c.session.advance(DestinationEvent::kPostcopyDiscardReceived));
  if (!c.postcopy)
    return Status(ErrorCode::kProtocol, "postcopy_discard in a session without post-copy");
  const auto start = std::chrono::steady_clock::now();
  auto m = wire::decode_postcopy_start(body, c.table, c.page_size);
  if (!m) return m.status().with_context("postcopy_discard");
  if (!discarded) {
    RS_ASSIGN_OR_RETURN(discarded,
                        DiscardedPages::register_memory(c.regions, c.table, c.page_size));
  }
  RS_ASSIGN_OR_RETURN(uint64_t n, discarded->drop(m->pages));
  log::info("post-copy discard {}: {} page(s) dropped in {:.1f} ms while the guest runs there",
            m->rounds, n, ms_since(start));
  RS_RETURN_IF_ERROR(c.send_control(wire::FrameType::kPostcopyDiscarded, {}));
  return c.session.advance(DestinationEvent::kPostcopyDiscardedSent);
}

}  // namespace ramshift::migration
