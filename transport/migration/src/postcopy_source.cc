#include "postcopy_source.h"

#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "frame_io.h"
#include "ramshift/base/clock.h"
#include "ramshift/base/log.h"
#include "ramshift/pipeline/zero_page.h"

namespace ramshift::migration {

using std::chrono::milliseconds;
using wire::FrameType;

PostcopySender::PostcopySender(transport::Connection& conn,
                               const std::vector<guest::Region>& regions, uint32_t page_size,
                               uint32_t data_queues, pipeline::MemoryDigest& digest,
                               const std::vector<std::vector<uint8_t>>& pages)
    : conn_(conn), regions_(regions), page_size_(page_size), queues_(data_queues), digest_(digest) {
  for (uint32_t r = 0; r < regions.size(); ++r) {
    table_.regions.push_back({r, regions[r].bytes, regions[r].name});
    offsets_.push_back(keys_);
    keys_ += wire::region_pages(regions[r].bytes, page_size);
  }
  left_.assign((keys_ + 7) / 8, 0);
  for (uint32_t r = 0; r < regions.size(); ++r)
    for (uint64_t i = 0; i < wire::region_pages(regions[r].bytes, page_size); ++i)
      if (pages[r][i / 8] >> (i % 8) & 1) {
        const uint64_t k = offsets_[r] + i;
        left_[k / 8] |= static_cast<uint8_t>(1u << (k % 8));
        ++total_;
      }
}

void PostcopySender::claim(uint32_t region, uint64_t first, uint32_t count) {
  for (uint64_t p = first; p < first + count; ++p) {
    const uint64_t k = key(region, p);
    const uint8_t mask = static_cast<uint8_t>(1u << (k % 8));
    if (!(left_[k / 8] & mask)) continue;
    left_[k / 8] &= static_cast<uint8_t>(~mask);
    ++sent_;
    digest_.update_page(region, p, regions_[region].memory);
  }
}

std::optional<PostcopySender::Run> PostcopySender::next_run() {
  std::lock_guard lock(mu_);
  if (sent_ == total_) return std::nullopt;
  // The first page left at or after the cursor, wrapping once: bytes of the bitmap with
  // nothing left are skipped whole.
  auto find_from = [this](uint64_t from) -> uint64_t {
    for (uint64_t k = from; k < keys_;) {
      if (k % 8 == 0 && left_[k / 8] == 0) {
        k += 8;
        continue;
      }
      if (left_[k / 8] >> (k % 8) & 1) return k;
      ++k;
    }
    return keys_;
  };
  uint64_t k = find_from(cursor_);
  if (k == keys_) k = find_from(0);
  if (k == keys_) return std::nullopt;
  const uint32_t region = static_cast<uint32_t>(
      std::upper_bound(offsets_.begin(), offsets_.end(), k) - offsets_.begin() - 1);
  const uint64_t page = k - offsets_[region];
  const uint64_t region_end = wire::region_pages(regions_[region].bytes, page_size_);
  uint32_t count = 1;
  while (count < wire::kMaxPostcopyRun && page + count < region_end &&
         (left_[(k + count) / 8] >> ((k + count) % 8) & 1))
    ++count;
  claim(region, page, count);
  cursor_ = k + count;
  return Run{region, page, count};
}

Status PostcopySender::send_run(uint32_t queue, const Run& run, const std::atomic<bool>* abort) {
  uint8_t kinds[wire::kMaxPostcopyRun];
  transport::ConstBuffer segments[1 + wire::kMaxPostcopyRun];
  size_t n = 1;
  const std::byte* base = regions_[run.region].memory.data();
  for (uint32_t i = 0; i < run.count; ++i) {
    const std::byte* page = base + (run.first + i) * page_size_;
    const bool zero = pipeline::is_zero(page, page_size_);
    kinds[i] = zero ? wire::kPageKindZero : wire::kPageKindRaw;
    if (zero) continue;
    // Neighbouring raw pages go as one piece of the gather list.
    if (n > 1 && segments[n - 1].data() + segments[n - 1].size() == page)
      segments[n - 1] = {segments[n - 1].data(), segments[n - 1].size() + page_size_};
    else
      segments[n++] = {page, page_size_};
  }
  const auto head =
      wire::encode_postcopy_pages_head({run.region, run.first, run.count}, {kinds, run.count});
  segments[0] = head;
  // Why 60 s: the data queues' limit for a blocked send (docs/protocol.md, Timeouts).
  RS_ASSIGN_OR_RETURN(uint64_t bytes,
                      send_frame(conn_, queue, FrameType::kPostcopyPages, std::span(segments, n),
                                 milliseconds(60000), abort));
  wire_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  return Status::ok();
}

void PostcopySender::push_main(uint32_t queue) {
  while (!abort_.load(std::memory_order_relaxed)) {
    auto run = next_run();
    if (!run) break;
    Status s = send_run(queue + 1, *run, &abort_);
    if (!s) {
      if (!abort_.load()) {
        std::lock_guard lock(mu_);
        push_status_[queue] = s;
      }
      break;
    }
    pushed_.fetch_add(run->count, std::memory_order_relaxed);
  }
  // The last run may still be partly in the transport (tcp keeps what the socket did not
  // take until the next send, transport.h): it leaves now, or the destination waits for its
  // pages for good. Seen after a 2 s link cut: two pages never placed, both ends idle.
  if (!abort_.load()) {
    Status s = conn_.flush(queue + 1, milliseconds(60000));
    if (!s && !abort_.load()) {
      std::lock_guard lock(mu_);
      push_status_[queue] = s.with_context("pushing the last pages");
    }
  }
  pushers_done_.fetch_add(1);
}

Status PostcopySender::serve_request(std::span<const std::byte> body) {
  const auto received = Clock::now();
  RS_ASSIGN_OR_RETURN(auto request, wire::decode_page_request(body, table_, page_size_));
  for (const auto& p : request.pages) {
    {
      std::lock_guard lock(mu_);
      claim(p.region_id, p.page, 1);
      cursor_ = key(p.region_id, p.page) + 1;  // the push goes on from here
    }
    // Sent even when pushed already: the push may still be on its way, behind others.
    RS_RETURN_IF_ERROR(send_run(0, {p.region_id, p.page, 1}, nullptr));
    requested_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    service_us_.push_back(
        std::chrono::duration<double, std::micro>(Clock::now() - received).count());
  }
  // A guest thread waits for these: none may wait in the transport for the next answer.
  return conn_.flush(0, milliseconds(60000));
}

void PostcopySender::expose_main() {
  Status s;
  for (const auto& r : regions_) {
    const uint64_t bytes =
        std::min<uint64_t>(r.memory.size(), wire::region_pages(r.bytes, page_size_) * page_size_);
    const auto memory = r.memory.first(bytes);
    auto key = conn_.capabilities().keys_per_queue
                   ? conn_.register_memory_per_queue(memory, transport::MemoryAccess::kRemoteRead)
                   : conn_.register_memory(memory, transport::MemoryAccess::kRemoteRead);
    if (!key) {
      s = key.status();
      break;
    }
    read_keys_.push_back(std::move(*key));
    read_exposed_bytes_ += bytes;
  }
  expose_status_ = s;
  exposed_ = true;
}

Status PostcopySender::announce_reads() {
  announced_ = true;
  if (!expose_status_) {
    // Not fatal: the destination keeps asking for pages (e.g. a memlock limit that holds the
    // guest once, for the pushes' registration, but not twice).
    log::warn(
        "post-copy: the destination cannot read the guest's memory ({}); it asks for "
        "every page it faults on instead",
        expose_status_.message());
    return Status::ok();
  }
  wire::MemoryKeys keys;
  for (uint32_t r = 0; r < read_keys_.size(); ++r) {
    const auto& k = read_keys_[r];
    const uint64_t chunk = k.chunk_bytes == 0 ? k.length : k.chunk_bytes;
    for (uint64_t off = 0; off < k.length; off += chunk) {
      wire::KeyRange range{
          r, off, std::min(chunk, k.length - off), k.address + off, k.rkey_at(k.address + off), {}};
      for (uint32_t q = 0; q < k.queues; ++q)
        range.queue_rkeys.push_back(k.rkey_at(k.address + off, q));
      keys.ranges.push_back(std::move(range));
    }
  }
  const auto body = wire::encode(keys);
  const transport::ConstBuffer segments[1] = {body};
  RS_ASSIGN_OR_RETURN(uint64_t bytes, send_frame(conn_, 0, FrameType::kMemoryKeys, segments,
                                                 milliseconds(60000), nullptr));
  wire_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  RS_RETURN_IF_ERROR(conn_.flush(0, milliseconds(60000)));
  log::info("post-copy: the destination may read {} MiB of guest memory ({} keys)",
            read_exposed_bytes_ >> 20, keys.ranges.size());
  return Status::ok();
}

void PostcopySender::release_reads() {
  if (expose_thread_.joinable()) expose_thread_.join();
  bool released = true;
  for (const auto& k : read_keys_)
    if (Status s = conn_.release_memory(k); !s) {
      log::warn("post-copy: deregistering the guest memory the destination read: {}", s.message());
      released = false;
    }
  read_released_ = released && !read_keys_.empty();
  read_keys_.clear();
}

Status PostcopySender::run(SourceSession& session, const ProgressFn& progress,
                           milliseconds placed_timeout) {
  const auto start = Clock::now();
  push_status_.assign(queues_, Status::ok());
  if (conn_.capabilities().remote_read) expose_thread_ = std::thread([this] { expose_main(); });
  std::vector<std::thread> threads;
  for (uint32_t q = 0; q < queues_; ++q) threads.emplace_back([this, q] { push_main(q); });
  std::optional<Clock::time_point> all_pushed;
  auto last_progress = start - milliseconds(1000);
  Status result;
  bool placed = false;
  while (result.is_ok() && !placed) {
    {
      std::lock_guard lock(mu_);
      for (const auto& s : push_status_)
        if (!s) result = s;
      if (!result) break;
    }
    const auto now = Clock::now();
    if (progress && now - last_progress >= milliseconds(100)) {
      uint64_t sent;
      {
        std::lock_guard lock(mu_);
        sent = sent_;
      }
      Progress p{.status = MigrationStatus::kPostcopyActive,
                 .total_bytes = total_ * page_size_,
                 .done_bytes = sent * page_size_,
                 .wire_bytes = wire_bytes_.load(),
                 .elapsed_s = std::chrono::duration<double>(now - start).count(),
                 .paused = true,
                 .postcopy = true};
      progress(p);
      last_progress = now;
    }
    if (!all_pushed && pushers_done_.load() == queues_) all_pushed = now;
    if (all_pushed && now - *all_pushed > placed_timeout) {
      result = Status(ErrorCode::kTimeout,
                      fmt::format("every page was sent but the destination did not confirm them "
                                  "placed within {} s",
                                  placed_timeout.count() / 1000));
      break;
    }
    if (!announced_ && exposed_.load()) {
      result = announce_reads();
      if (!result) break;
    }
    transport::ConstBuffer msgs[16];
    // Why 1 ms: a request is noticed at once (poll returns on arrival); the timeout only
    // paces the progress and the checks above.
    auto got = conn_.poll(0, msgs, milliseconds(1));
    if (!got) {
      result = got.status().with_context("destination, during post-copy");
      break;
    }
    for (size_t i = 0; i < *got && result.is_ok() && !placed; ++i) {
      auto f = wire::parse_frame(msgs[i]);
      if (!f) {
        result = f.status();
        break;
      }
      switch (f->type) {
        case FrameType::kPageRequest:
          result = session.advance(SourceEvent::kPageRequestReceived);
          if (result) result = serve_request(f->body);
          break;
        case FrameType::kPostcopyRunning:
          result = wire::expect_empty(f->type, f->body);
          if (result) result = session.advance(SourceEvent::kPostcopyRunningReceived);
          running_at_ = Clock::now();
          break;
        case FrameType::kPostcopyPlaced:
          result = wire::expect_empty(f->type, f->body);
          if (result) result = session.advance(SourceEvent::kPostcopyPlacedReceived);
          placed = result.is_ok();
          break;
        case FrameType::kMemoryKeys:
          result = session.advance(SourceEvent::kMemoryKeysReceived);
          break;
        case FrameType::kError:
          session.fail(SourceEvent::kErrorReceived);
          result = peer_error(f->body, "destination");
          break;
        default:
          result = Status(ErrorCode::kProtocol,
                          fmt::format("unexpected {} from the destination during post-copy",
                                      wire::frame_type_name(f->type)));
      }
    }
  }
  abort_ = true;
  for (auto& t : threads) t.join();
  // Every page is placed (or post-copy failed): nothing may read the guest any more.
  release_reads();
  if (placed && sent_ != total_ && announced_ && expose_status_) {
    // The destination read these and placed them before the push reached them: the digest
    // covers them all the same (the paused guest's memory has not changed).
    std::lock_guard lock(mu_);
    constexpr uint64_t kStep = 1u << 30;
    for (uint32_t r = 0; r < regions_.size(); ++r)
      for (uint64_t p = 0, n = wire::region_pages(regions_[r].bytes, page_size_); p < n; p += kStep)
        claim(r, p, static_cast<uint32_t>(std::min(kStep, n - p)));
  }
  if (placed && sent_ != total_)
    return Status(ErrorCode::kProtocol,
                  fmt::format("the destination confirmed every page placed, but {} of {} were "
                              "never sent",
                              total_ - sent_, total_));
  return result;
}

PostcopyReport PostcopySender::figures() const {
  PostcopyReport r;
  r.requests = requested_.load();
  r.pages_faulted = requested_.load();
  r.pages_pushed = pushed_.load();
  std::lock_guard lock(mu_);
  r.service_latency = latency_figures(service_us_);
  r.read_exposed_bytes = read_exposed_bytes_;
  r.read_released = read_released_;
  return r;
}

Status postcopy_allowed(const SourceConfig& config, const guest::SourceGuest& guest) {
  if (config.mode == MigrationMode::kPrecopy) return Status::ok();
  if (guest.immutable())
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--mode {} moves a running guest; an image has nothing to run: "
                              "use --mode precopy",
                              migration_mode_name(config.mode)));
  if (config.verify == VerifyMode::kFull)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--verify full compares the paused guest on both hosts, but with "
                              "--mode {} it already runs on the destination: use --verify "
                              "transfer",
                              migration_mode_name(config.mode)));
  return Status::ok();
}

bool hybrid_switches(const SourceConfig& config, const Decision& d, const RoundMeasurement& m,
                     uint32_t round) {
  if (config.mode != MigrationMode::kHybrid || d.kind == Decision::kSwitchover) return false;
  if (config.postcopy_request && config.postcopy_request->load()) return true;
  if (d.kind != Decision::kNextRound) return true;
  if (config.postcopy_after) return round >= config.postcopy_after;
  return static_cast<double>(m.dirty_bytes) >
         config.convergence.min_shrink * static_cast<double>(m.sent_guest_bytes);
}

Status postcopy_lost(const Status& s) {
  return s.with_context(
      "post-copy failed: the guest ran on the destination without all its memory and is lost "
      "(the source's paused copy is stale)");
}

std::vector<std::vector<uint8_t>> postcopy_pages(const std::vector<guest::Region>& regions,
                                                 uint32_t page_size, const PageSelection& dirty,
                                                 const PageSelection& more) {
  std::vector<std::vector<uint8_t>> maps;
  for (size_t r = 0; r < regions.size(); ++r) {
    const uint64_t n = wire::region_pages(regions[r].bytes, page_size);
    std::vector<uint8_t> map((n + 7) / 8, 0);
    auto set = [&](uint64_t p) { map[p / 8] |= static_cast<uint8_t>(1u << (p % 8)); };
    if (!dirty[r] || !more[r]) {
      for (uint64_t p = 0; p < n; ++p) set(p);
    } else {
      for (uint64_t p : *dirty[r]) set(p);
      for (uint64_t p : *more[r]) set(p);
    }
    maps.push_back(std::move(map));
  }
  return maps;
}

Status serve_postcopy(const PostcopySourceRun& run, const wire::PostcopyStart& start,
                      PostcopySender::Clock::time_point paused, MigrationReport& report) {
  const auto started = PostcopySender::Clock::now();
  PostcopySender sender(run.conn, run.regions, run.config.page_size, run.config.queues, run.digest,
                        start.pages);
  Status s = sender.run(run.session, run.progress, run.config.verdict_timeout);
  report.mode = migration_mode_name(run.config.mode);
  report.postcopy = sender.figures();
  report.postcopy->postcopy_ms = ms_since(started);
  report.wire_bytes += sender.wire_bytes();
  if (sender.running_at()) {
    report.downtime_ms =
        std::chrono::duration<double, std::milli>(*sender.running_at() - paused).count();
    log::info(
        "post-copy: downtime {:.1f} ms: {:.1f} ms to POSTCOPY_START sent, {:.1f} ms more "
        "to POSTCOPY_RUNNING back",
        *report.downtime_ms, std::chrono::duration<double, std::milli>(started - paused).count(),
        std::chrono::duration<double, std::milli>(*sender.running_at() - started).count());
  }
  if (s)
    log::info("post-copy: every page placed after {:.0f} ms ({} pushed, {} asked for)",
              report.postcopy->postcopy_ms, report.postcopy->pages_pushed,
              report.postcopy->pages_faulted);
  return s;
}

}  // namespace ramshift::migration
