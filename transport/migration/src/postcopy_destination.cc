#include "postcopy_destination.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>

#include "frame_io.h"
#include "ramshift/base/clock.h"
#include "ramshift/base/log.h"
#include "ramshift/base/mapped_memory.h"

namespace ramshift::migration {

using std::chrono::milliseconds;

Result<std::unique_ptr<PostcopyPlacer>> PostcopyPlacer::start(
    std::vector<std::span<std::byte>> regions, const wire::RegionTable& table, uint32_t page_size,
    const wire::PostcopyStart& start, pipeline::MemoryDigest& digest, SendRequest send_request,
    OnError on_error, std::unique_ptr<DiscardedPages> discarded) {
  if (page_size != host_page_size())
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("post-copy places whole host pages: the session's page size ({} "
                              "bytes) must be this host's ({} bytes); use --page-size {}",
                              page_size, host_page_size(), host_page_size()));
  std::unique_ptr<PostcopyPlacer> p(new PostcopyPlacer());
  p->table_ = table;
  p->page_size_ = page_size;
  p->digest_ = &digest;
  p->send_request_ = std::move(send_request);
  p->on_error_ = std::move(on_error);
  p->zeros_.assign(page_size, std::byte{0});
  uint64_t keys = 0;
  for (const auto& r : table.regions) {
    p->offsets_.push_back(keys);
    keys += wire::region_pages(r.bytes, page_size);
  }
  p->needed_.assign((keys + 7) / 8, 0);
  for (uint32_t r = 0; r < table.regions.size(); ++r)
    for (uint64_t i = 0; i < wire::region_pages(table.regions[r].bytes, page_size); ++i)
      if (start.pages[r][i / 8] >> (i % 8) & 1) {
        const uint64_t k = p->offsets_[r] + i;
        p->needed_[k / 8] |= static_cast<uint8_t>(1u << (k % 8));
        ++p->needed_total_;
      }
  p->needed_left_ = p->needed_total_;
  p->claimed_ = std::make_unique<std::atomic<uint8_t>[]>(keys);
  p->done_.assign(p->needed_.size(), 0);
  p->requested_.assign(p->needed_.size(), 0);
  if (!discarded) {
    RS_ASSIGN_OR_RETURN(discarded, DiscardedPages::register_memory(regions, table, page_size));
  }
  // The named pages go (those a hybrid's POSTCOPY_DISCARD left): their next access faults,
  // and only what the source sends fills them.
  RS_RETURN_IF_ERROR(discarded->drop(start.pages).status());
  p->pages_ = discarded->take_pages();
  p->fault_thread_ = std::thread([raw = p.get()] { raw->fault_main(); });
  return p;
}

PostcopyPlacer::~PostcopyPlacer() {
  stop_ = true;
  if (fault_thread_.joinable()) fault_thread_.join();
  pages_.reset();  // wakes any guest thread still waiting
}

void PostcopyPlacer::fault_main() {
  Status s = serve_faults();
  if (!s && !stop_.load()) {
    log::error("post-copy fault thread: {}", s.message());
    on_error_(s);
  }
}

Status PostcopyPlacer::serve_faults() {
  while (!stop_.load(std::memory_order_relaxed)) {
    // Why 50 ms: only how soon the thread notices stop_; a fault wakes it at once.
    RS_ASSIGN_OR_RETURN(auto faults, pages_->read_faults(milliseconds(50)));
    if (faults.empty()) continue;
    const auto now = Clock::now();
    wire::PageRequest request;
    std::vector<guest::PageFault> wake, zero, read;
    std::shared_ptr<const Reader> reader;
    {
      std::lock_guard lock(mu_);
      reader = reader_;
      for (const auto& f : faults) {
        ++counts_.faults;
        const uint64_t k = key(f.region, f.page);
        if (bit(done_, k)) {  // placed after the fault was raised: its copy woke the thread
          wake.push_back(f);
          continue;
        }
        waiters_[k].push_back({f.thread_id, now});
        if (!bit(needed_, k)) {
          zero.push_back(f);  // never sent because it was zero: nothing to ask for
        } else if (!bit(requested_, k)) {
          requested_[k / 8] |= static_cast<uint8_t>(1u << (k % 8));
          if (reader && reader->locate(f.region, f.page * page_size_)) {
            read.push_back(f);
            ++counts_.reads;
          } else {
            request.pages.push_back({f.region, f.page});
            ++counts_.requests;
          }
        }
      }
    }
    // The request first: the source's answer is the longest wait.
    if (!request.pages.empty()) RS_RETURN_IF_ERROR(send_request_(request));
    if (!read.empty()) RS_RETURN_IF_ERROR(read_and_place(*reader, read));
    for (const auto& f : wake) RS_RETURN_IF_ERROR(pages_->wake(f.region, f.page));
    for (const auto& f : zero) {
      RS_ASSIGN_OR_RETURN(bool placed, place_once(f.region, f.page, {}));
      if (placed) {
        std::lock_guard lock(mu_);
        ++counts_.pages_zero_local;
      }
    }
  }
  return Status::ok();
}

std::optional<std::pair<uint64_t, uint32_t>> PostcopyPlacer::Reader::locate(uint32_t region,
                                                                            uint64_t offset) const {
  for (const auto& r : ranges)
    if (r.region_id == region && offset >= r.offset && offset - r.offset < r.length)
      // Reads go on queue 0 (read_and_place): its key, where each queue has its own.
      return std::pair{r.address + (offset - r.offset),
                       r.queue_rkeys.empty() ? r.rkey : r.queue_rkeys[0]};
  return std::nullopt;
}

Status PostcopyPlacer::enable_reads(transport::Connection& conn, const wire::MemoryKeys& keys) {
  if (!conn.capabilities().remote_read)
    return Status(ErrorCode::kProtocol,
                  fmt::format("memory_keys from the source, but {} has no one-sided reads",
                              conn.transport_name()));
  auto reader = std::make_shared<Reader>();
  reader->conn = &conn;
  reader->ranges = keys.ranges;
  RS_ASSIGN_OR_RETURN(reader->staging, MappedMemory::anonymous(size_t{kStagingPages} * page_size_));
  RS_RETURN_IF_ERROR(
      conn.register_memory(reader->staging.bytes(), transport::MemoryAccess::kReadTarget).status());
  std::lock_guard lock(mu_);
  if (reader_) return Status(ErrorCode::kProtocol, "memory_keys from the source twice");
  reader_ = std::move(reader);
  log::info("post-copy: faults now read their pages from the source ({} key range(s))",
            keys.ranges.size());
  return Status::ok();
}

Status PostcopyPlacer::read_and_place(const Reader& reader,
                                      std::span<const guest::PageFault> faults) {
  std::byte* staging = reader.staging.bytes().data();
  for (size_t at = 0; at < faults.size(); at += kStagingPages) {
    const auto batch = faults.subspan(at, std::min<size_t>(kStagingPages, faults.size() - at));
    std::vector<transport::RemoteRead> reads;
    for (size_t i = 0; i < batch.size(); ++i) {
      auto where = reader.locate(batch[i].region, batch[i].page * page_size_);
      reads.push_back({staging + i * page_size_, page_size_, where->first, where->second});
    }
    // Why 10 s: a read the source's device answers in microseconds; only a cut link (which
    // the connection's own liveness check reports sooner with --peer-timeout) takes longer.
    const auto posted = Clock::now();
    RS_RETURN_IF_ERROR(reader.conn->read(0, reads, milliseconds(10000))
                           .with_context("reading faulted pages from the source"));
    {
      std::lock_guard lock(mu_);
      read_call_us_.push_back(
          std::chrono::duration<double, std::micro>(Clock::now() - posted).count());
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      RS_ASSIGN_OR_RETURN(bool placed, place_once(batch[i].region, batch[i].page,
                                                  {staging + i * page_size_, page_size_}, true));
      if (!placed) {  // a push placed it first; its copy woke the waiters
        std::lock_guard lock(mu_);
        ++counts_.pages_duplicate;
      }
    }
  }
  return Status::ok();
}

Result<bool> PostcopyPlacer::place_once(uint32_t region, uint64_t page,
                                        std::span<const std::byte> bytes, bool by_read) {
  const uint64_t k = key(region, page);
  if (claimed_[k].exchange(1)) return false;
  RS_ASSIGN_OR_RETURN(auto placed, bytes.empty() ? pages_->place_zero(region, page)
                                                 : pages_->place(region, page, bytes));
  if (placed == guest::MissingPages::Placed::kPresent)
    log::warn("post-copy: page {} of region {} was present when its copy arrived", page, region);
  digest_->update_page_from(region, page,
                            bytes.empty() ? std::span<const std::byte>(zeros_) : bytes);
  const bool needed = bit(needed_, k);
  resolve(region, page, needed, by_read);
  if (needed) needed_left_.fetch_sub(1);
  return true;
}

void PostcopyPlacer::resolve(uint32_t region, uint64_t page, bool needed, bool by_read) {
  const auto now = Clock::now();
  const uint64_t k = key(region, page);
  std::lock_guard lock(mu_);
  done_[k / 8] |= static_cast<uint8_t>(1u << (k % 8));
  if (needed) ++(bit(requested_, k) ? counts_.pages_faulted : counts_.pages_pushed);
  auto it = waiters_.find(k);
  if (it == waiters_.end()) return;
  for (const auto& w : it->second) {
    const double us = std::chrono::duration<double, std::micro>(now - w.since).count();
    latencies_us_.push_back(us);
    if (by_read) read_latencies_us_.push_back(us);
    ThreadBlocked& b = blocked_[w.thread];
    b.thread = w.thread;
    ++b.faults;
    b.total_ms += us / 1000;
    b.max_ms = std::max(b.max_ms, us / 1000);
  }
  waiters_.erase(it);
}

Status PostcopyPlacer::place_frame(std::span<const std::byte> body) {
  RS_ASSIGN_OR_RETURN(auto run, wire::decode_postcopy_pages(body, table_, page_size_));
  size_t raw = 0;
  for (uint32_t i = 0; i < run.run.count; ++i) {
    const uint64_t page = run.run.first + i;
    if (!bit(needed_, key(run.run.region_id, page)))
      return Status(ErrorCode::kProtocol,
                    fmt::format("postcopy_pages: page {} of region {} was not named in "
                                "postcopy_start",
                                page, run.run.region_id));
    std::span<const std::byte> bytes;
    if (run.kinds[i] == wire::kPageKindRaw)
      bytes = run.data.subspan(raw++ * page_size_, page_size_);
    RS_ASSIGN_OR_RETURN(bool placed, place_once(run.run.region_id, page, bytes));
    if (!placed) {
      std::lock_guard lock(mu_);
      ++counts_.pages_duplicate;
    }
  }
  return Status::ok();
}

PostcopyReport PostcopyPlacer::figures() const {
  std::lock_guard lock(mu_);
  PostcopyReport r = counts_;
  r.fault_latency = latency_figures(latencies_us_);
  r.read_fault_latency = latency_figures(read_latencies_us_);
  r.read_latency = latency_figures(read_call_us_);
  r.fault_path = r.reads > 0 && r.requests > 0 ? "rdma_read+request"
                 : r.reads > 0                 ? "rdma_read"
                 : r.requests > 0              ? "request"
                                               : "none";
  for (const auto& [tid, b] : blocked_) r.blocked.push_back(b);
  std::sort(r.blocked.begin(), r.blocked.end(),
            [](const ThreadBlocked& a, const ThreadBlocked& b) { return a.thread < b.thread; });
  return r;
}

}  // namespace ramshift::migration

namespace ramshift::migration {

void PlacerSlot::open(PostcopyPlacer* placer) {
  std::lock_guard lock(mu_);
  placer_ = placer;
  cv_.notify_all();
}

void PlacerSlot::close() {
  std::unique_lock lock(mu_);
  closed_ = true;
  placer_ = nullptr;
  cv_.notify_all();
  cv_.wait(lock, [&] { return active_ == 0; });
}

Status PlacerSlot::place(std::span<const std::byte> body, const std::atomic<bool>& stop) {
  PostcopyPlacer* placer;
  {
    std::unique_lock lock(mu_);
    while (!placer_ && !closed_ && !stop.load()) cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (!placer_) return Status::ok();  // closed (a late duplicate) or stopping
    placer = placer_;
    ++active_;
  }
  Status s = placer->place_frame(body);
  std::lock_guard lock(mu_);
  if (--active_ == 0) cv_.notify_all();
  return s;
}

Status postcopy_possible(const DestinationConfig& config, uint32_t page_size) {
  if (!config.output_path.empty())
    return Status(ErrorCode::kInvalidArgument,
                  "post-copy runs the guest in this process's memory, which userfaultfd serves; "
                  "it cannot write --guest-out: receive without it");
  if (page_size != host_page_size())
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("post-copy places whole host pages: --page-size must be {} (the "
                              "session's is {})",
                              host_page_size(), page_size));
  return Status::ok();
}

PostcopyReceiver::~PostcopyReceiver() {
  c_.slot.close();
  placer_.reset();
}

Status PostcopyReceiver::start(std::span<const std::byte> body,
                               std::vector<std::span<std::byte>> regions,
                               std::unique_ptr<DiscardedPages> discarded,
                               const std::function<Status()>& resume) {
  start_ = std::chrono::steady_clock::now();
  RS_ASSIGN_OR_RETURN(auto start, wire::decode_postcopy_start(body, c_.table, c_.page_size));
  rounds_ = start.rounds;
  RS_ASSIGN_OR_RETURN(placer_, PostcopyPlacer::start(
                                   std::move(regions), c_.table, c_.page_size, start, c_.digest,
                                   [this](const wire::PageRequest& r) {
                                     return c_.send_control(wire::FrameType::kPageRequest,
                                                            wire::encode(r));
                                   },
                                   [this](const Status& s) {
                                     std::lock_guard lock(error_mu_);
                                     if (placer_error_.is_ok()) placer_error_ = s;
                                   },
                                   std::move(discarded)));
  c_.slot.open(placer_.get());
  const double set_up_ms = ms_since(start_);
  RS_RETURN_IF_ERROR(resume());
  log::info(
      "post-copy: the guest runs here {:.1f} ms after POSTCOPY_START ({:.1f} ms to drop "
      "and register its memory); {} page(s) to come",
      ms_since(start_), set_up_ms, placer_->pages_needed());
  return c_.send_control(wire::FrameType::kPostcopyRunning, {});
}

Status PostcopyReceiver::run() {
  using std::chrono::steady_clock;
  bool placed = false;
  auto last_progress = steady_clock::now() - milliseconds(1000);
  for (;;) {
    if (c_.stop.load()) return Status(ErrorCode::kCancelled, "stopped");
    {
      std::lock_guard lock(error_mu_);
      if (!placer_error_.is_ok()) return placer_error_;
    }
    if (!placed && placer_->all_placed()) {
      postcopy_ms_ =
          std::chrono::duration<double, std::milli>(steady_clock::now() - start_).count();
      RS_RETURN_IF_ERROR(c_.send_control(wire::FrameType::kPostcopyPlaced, {}));
      RS_RETURN_IF_ERROR(c_.session.advance(DestinationEvent::kPostcopyPlacedSent));
      log::info("post-copy: every page placed after {:.0f} ms", postcopy_ms_);
      placed = true;
    }
    if (c_.progress && steady_clock::now() - last_progress >= milliseconds(100)) {
      const uint64_t n = placer_->pages_needed(), left = placer_->pages_left();
      Progress p{.status = MigrationStatus::kPostcopyActive,
                 .round = rounds_,
                 .total_bytes = n * c_.page_size,
                 .done_bytes = (n - left) * c_.page_size,
                 .elapsed_s = std::chrono::duration<double>(steady_clock::now() - start_).count(),
                 .paused = true,
                 .postcopy = true};
      c_.progress(p);
      last_progress = steady_clock::now();
    }
    // Why 10 ms: how soon the last page placed by a data queue is confirmed.
    auto f = receive_frame(c_.conn, 0, milliseconds(10));
    if (!f) {
      if (f.status().code() == ErrorCode::kTimeout) continue;
      if (c_.stop.load()) return Status(ErrorCode::kCancelled, "stopped");
      return f.status().with_context("source, during post-copy");
    }
    switch (f->type) {
      case wire::FrameType::kPostcopyPages:  // requested: placed by this thread at once
        RS_RETURN_IF_ERROR(placer_->place_frame(f->body));
        break;
      case wire::FrameType::kMemoryKeys: {  // where the source's guest memory may be read
        RS_ASSIGN_OR_RETURN(auto keys,
                            decode_memory_keys(c_.conn, f->body, c_.table, c_.page_size));
        RS_RETURN_IF_ERROR(placer_->enable_reads(c_.conn, keys));
        break;
      }
      case wire::FrameType::kDigest:
        RS_RETURN_IF_ERROR(c_.session.advance(DestinationEvent::kDigestReceived));
        RS_RETURN_IF_ERROR(check_digest(f->body));
        RS_RETURN_IF_ERROR(c_.send_control(wire::FrameType::kCommit, {}));
        return c_.session.advance(DestinationEvent::kCommitSent);
      case wire::FrameType::kError:
        c_.session.fail(DestinationEvent::kErrorReceived);
        return peer_error(f->body, "source");
      default:
        return Status(ErrorCode::kProtocol,
                      fmt::format("unexpected {} from the source during post-copy",
                                  wire::frame_type_name(f->type)));
    }
  }
}

Status PostcopyReceiver::check_digest(std::span<const std::byte> body) {
  const auto t0 = std::chrono::steady_clock::now();
  RS_ASSIGN_OR_RETURN(auto digest, wire::decode_digest(body));
  if (digest.chunk_bytes != c_.digest.chunk_bytes())
    return Status(ErrorCode::kProtocol,
                  fmt::format("digest chunks of {} bytes; this session's are {}",
                              digest.chunk_bytes, c_.digest.chunk_bytes()));
  std::vector<std::string> names;
  for (const auto& r : c_.table.regions) names.push_back(r.name);
  Status s = c_.digest.compare(digest.regions, names);
  verify_ms_ =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

PostcopyReport PostcopyReceiver::figures() const {
  PostcopyReport r = placer_ ? placer_->figures() : PostcopyReport{};
  r.postcopy_ms = postcopy_ms_;
  return r;
}

}  // namespace ramshift::migration
