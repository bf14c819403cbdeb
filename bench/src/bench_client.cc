// `ramshift bench --to`: one configuration against a bench server (see throughput.h).
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <thread>

#include "bench_wire.h"
#include "ramshift/base/cpu_affinity.h"
#include "ramshift/base/log.h"
#include "ramshift/base/mapped_memory.h"
#include "ramshift/bench/throughput.h"
#include "ramshift/migration/page_sender.h"
#include "ramshift/pipeline/batch_encoder.h"
#include "ramshift/pipeline/compression_governor.h"
#include "ramshift/transport/blocking_send.h"

namespace ramshift::bench {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

uint64_t process_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// Fills the two generations of the working set.
void fill_generations(guest::Pattern pattern, std::span<std::byte> a, std::span<std::byte> b,
                      size_t page_size) {
  guest::fill_pattern(a, pattern, 1, 0, page_size);  // delta's first generation is mixed
  if (pattern != guest::Pattern::kDelta) {
    guest::fill_pattern(b, pattern, 2, 0, page_size);
    return;
  }
  std::memcpy(b.data(), a.data(), a.size());
  for (size_t off = 0; off < b.size(); off += page_size)  // one byte per page
    b[off + (off / page_size * 97) % page_size] ^= std::byte{0x5a};
}

// A control message waits for room at most 10 s; placed pages 30 s (as the server's
// replies do), then the run fails with kTimeout.
const transport::SendWait kControlWait{milliseconds(10000)};
const transport::SendWait kPlaceWait{milliseconds(30000)};

// Where a placed run lands: the same offset of the server's working set (one memory key),
// under the key for `queue`, the one the write goes through; a write stops at a registration
// chunk of either side's key.
class KeyPlacement final : public migration::PlacementMap {
 public:
  KeyPlacement(const transport::MemoryKey& remote, const transport::MemoryKey& local,
               uint32_t page_size, uint32_t queue)
      : remote_(remote), local_(local), page_size_(page_size), queue_(queue) {}
  Result<migration::PlacementPiece> locate(const pipeline::Placement& run,
                                           uint64_t offset) override {
    const uint64_t remote = remote_.address + run.first_page * page_size_ + offset;
    const std::byte* local = run.memory + offset;
    uint64_t max = UINT64_MAX;
    if (remote_.chunk_bytes != 0) {
      const uint64_t off = remote - remote_.address;
      max = remote_.chunk_bytes - off % remote_.chunk_bytes;
    }
    if (local_.chunk_bytes != 0) {
      const uint64_t off = reinterpret_cast<uint64_t>(local) - local_.address;
      max = std::min(max, local_.chunk_bytes - off % local_.chunk_bytes);
    }
    return migration::PlacementPiece{local, remote, remote_.rkey_at(remote, queue_), max};
  }

 private:
  const transport::MemoryKey& remote_;
  const transport::MemoryKey& local_;
  uint32_t page_size_;
  uint32_t queue_;
};

struct QueueOutcome {
  uint64_t guest_bytes = 0;
  uint64_t wire_bytes = 0;
  uint64_t messages = 0;
  pipeline::PageCounts counts;
  std::vector<double> latencies_ms;
  Clock::time_point last_ack{};
  Status status;
};

class PointRunner {
 public:
  PointRunner(const BenchSettings& s, const BenchPoint& p) : s_(s), p_(p) {}

  Result<BenchResult> run(const BenchProgress& progress) {
    RS_RETURN_IF_ERROR(validate());
    transport::TransportOptions topts;
    topts.connect_timeout = s_.connect_timeout;
    topts.settings = p_.backend_settings;
    auto conn = transport::connect(s_.to, p_.queues + 1, topts);
    if (!conn && conn.status().code() == ErrorCode::kUnreachable)
      return Status(
          ErrorCode::kUnreachable,
          conn.status().message() + "; start `ramshift bench --server --listen URI` there");
    if (!conn) return conn.status();
    conn_ = std::move(conn).value();
    RS_ASSIGN_OR_RETURN(gen_[0], MappedMemory::anonymous(s_.working_set_bytes));
    RS_ASSIGN_OR_RETURN(gen_[1], MappedMemory::anonymous(s_.working_set_bytes));
    fill_generations(s_.pattern, gen_[0].bytes(), gen_[1].bytes(), s_.page_size);

    wire::Config config{s_.page_size,          batch_pages_,           p_.queues,
                        uint8_t(p_.codec),     p_.zstd_level,          s_.working_set_bytes,
                        s_.xbzrle_cache_bytes, /*keys_per_queue=*/true};
    RS_RETURN_IF_ERROR(send_control(wire::encode(config)));
    RS_ASSIGN_OR_RETURN(auto ready_msg,
                        await_control(wire::ControlKind::kReady, milliseconds(60000)));
    RS_ASSIGN_OR_RETURN(auto ready, wire::decode_ready(ready_msg));
    if (ready.placed) {
      if (!conn_->capabilities().zero_copy_write)
        return Status(ErrorCode::kProtocol, "the server offers placement this transport cannot do");
      if (ready.key.length != s_.working_set_bytes)
        return Status(ErrorCode::kProtocol,
                      "the server's memory key does not cover the working set");
      if (!ready.key.queue_rkeys.empty() && ready.key.queues != conn_->queue_count())
        return Status(ErrorCode::kProtocol,
                      fmt::format("the server gave keys for {} queues on a connection of {}",
                                  ready.key.queues, conn_->queue_count()));
      for (auto& g : gen_) {
        auto key = conn_->register_memory(g.bytes(), transport::MemoryAccess::kLocal);
        if (!key) return key.status().with_context("bench working set");
        local_keys_.push_back(std::move(key).value());
      }
      remote_key_ = ready.key;
    }
    placing_ = ready.placed;

    const uint64_t cpu_start = process_cpu_ns();
    start_ = Clock::now();
    deadline_ = start_ + s_.duration;
    std::vector<QueueOutcome> outcomes(p_.queues);
    std::vector<std::thread> threads;
    for (uint32_t q = 0; q < p_.queues; ++q)
      threads.emplace_back([this, q, &outcomes] {
        outcomes[q].status = run_queue(q, outcomes[q]);
        if (!outcomes[q].status) {
          failed_ = true;
          conn_->close();  // wake the other queues
        }
      });
    while (progress && Clock::now() < deadline_ && !aborted()) {
      progress(std::chrono::duration<double>(Clock::now() - start_) / s_.duration);
      std::this_thread::sleep_for(milliseconds(200));
    }
    for (auto& t : threads) t.join();
    const uint64_t cpu_ns = process_cpu_ns() - cpu_start;
    for (auto& o : outcomes) RS_RETURN_IF_ERROR(o.status);

    RS_RETURN_IF_ERROR(send_control(wire::encode_finish()));
    RS_ASSIGN_OR_RETURN(auto result_msg,
                        await_control(wire::ControlKind::kResult, milliseconds(60000)));
    RS_ASSIGN_OR_RETURN(auto server, wire::decode_result(result_msg));
    conn_->close();
    auto result = summarize(outcomes, cpu_ns, server);
    if (server.batches != result.messages)
      return Status(ErrorCode::kProtocol,
                    fmt::format("the server decoded {} batches of the {} sent", server.batches,
                                result.messages));
    return result;
  }

 private:
  bool aborted() const { return failed_.load(std::memory_order_relaxed); }

  Status validate() {
    const uint32_t ps = s_.page_size;
    if (p_.queues < 1 || p_.queues > 64)
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("queues {} is outside 1..64", p_.queues));
    if (p_.message_bytes < ps || p_.message_bytes % ps != 0 || p_.message_bytes / ps > 1024)
      return Status(
          ErrorCode::kInvalidArgument,
          fmt::format("message size {} must be 1..1024 pages of {} bytes", p_.message_bytes, ps));
    batch_pages_ = p_.message_bytes / ps;
    if (s_.working_set_bytes % (uint64_t{batch_pages_} * ps) != 0 ||
        s_.working_set_bytes < uint64_t{p_.message_bytes} * p_.queues)
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("the working set ({} bytes) must be a multiple of the message "
                                "size and hold one message per queue",
                                s_.working_set_bytes));
    return Status::ok();
  }

  Status send_control(const std::vector<std::byte>& msg) {
    transport::ConstBuffer seg(msg);
    RS_RETURN_IF_ERROR(transport::send_blocking(*conn_, 0, std::span(&seg, 1), kControlWait));
    return conn_->flush(0, milliseconds(10000));
  }

  Result<std::span<const std::byte>> await_control(wire::ControlKind want, milliseconds timeout) {
    transport::ConstBuffer msg;
    RS_ASSIGN_OR_RETURN(size_t n, conn_->poll(0, std::span(&msg, 1), timeout));
    if (n == 0) return Status(ErrorCode::kTimeout, "the bench server did not answer");
    RS_ASSIGN_OR_RETURN(auto kind, wire::control_kind(msg));
    if (kind != want)
      return Status(
          ErrorCode::kProtocol,
          fmt::format("bench server sent control kind {}, expected {}", int(kind), int(want)));
    return msg;
  }

  // Drains acknowledgements on `queue` (waiting up to `timeout` for the first).
  Status drain_acks(uint32_t queue, std::vector<Clock::time_point>& sent, uint64_t& acked,
                    QueueOutcome& out, milliseconds timeout) {
    transport::ConstBuffer msgs[64];
    RS_ASSIGN_OR_RETURN(size_t n, conn_->poll(queue, msgs, timeout));
    const auto now = Clock::now();
    for (size_t i = 0; i < n; ++i) {
      RS_ASSIGN_OR_RETURN(auto h, wire::load_data_header(msgs[i]));
      if (h.kind != wire::DataKind::kAck || h.seq != acked || h.seq >= sent.size())
        return Status(ErrorCode::kProtocol,
                      fmt::format("queue {}: acknowledgement {} out of order (expected {})", queue,
                                  h.seq, acked));
      out.latencies_ms.push_back(
          std::chrono::duration<double, std::milli>(now - sent[h.seq]).count());
      ++acked;
      out.last_ack = now;
    }
    return Status::ok();
  }

  Status run_queue(uint32_t q, QueueOutcome& out) {
    pin_queue_thread(p_.cpus, q);  // a fresh thread per run: nothing to undo
    const uint32_t queue = q + 1;
    const uint32_t ps = s_.page_size;
    const uint64_t chunks = s_.working_set_bytes / (uint64_t{batch_pages_} * ps);
    pipeline::CodecConfig codec{p_.codec, p_.zstd_level, s_.xbzrle_cache_bytes};
    pipeline::BatchEncoder encoder(codec, ps, batch_pages_, s_.xbzrle_cache_bytes / p_.queues);
    std::vector<Clock::time_point> sent;
    uint64_t acked = 0;
    std::byte header[wire::kDataHeaderBytes];
    // While the queue is full, the server's acknowledgements are taken in so its replies
    // never back up; no deadline: a dead server ends the wait with a disconnect.
    transport::SendWait wait{transport::Millis::max(), milliseconds(10), nullptr,
                             [&] { return drain_acks(queue, sent, acked, out, milliseconds(0)); }};
    migration::PageSender sender(*conn_, queue, kPlaceWait, wait);
    for (uint32_t pass = 0; Clock::now() < deadline_ && !aborted(); ++pass) {
      const uint32_t gen = pass % 2;
      const std::byte* base = gen_[gen].bytes().data();
      for (uint64_t c = q; c < chunks && Clock::now() < deadline_; c += p_.queues) {
        pipeline::BatchPolicy policy;
        policy.compress = governor_.should_compress();
        policy.cache_insert = pipeline::codec_uses_xbzrle(p_.codec);
        policy.zero_copy = true;  // the working set never changes while it is sent
        policy.place_raw = placing_;
        encoder.begin(0, pass, policy);
        const uint64_t first = c * batch_pages_;
        for (uint64_t p = first; p < first + batch_pages_; ++p) encoder.add(p, base + p * ps);
        auto batch = encoder.finish();
        uint64_t bytes = 0;
        if (!encoder.placements().empty()) {
          KeyPlacement map(remote_key_, local_keys_[gen], ps, queue);
          RS_ASSIGN_OR_RETURN(bytes, sender.place(encoder.placements(), map));
        }
        wire::store_data_header(header, wire::DataKind::kBatch, sent.size());
        sent.push_back(Clock::now());
        RS_ASSIGN_OR_RETURN(uint64_t message, sender.send_message(header, batch.segments));
        bytes += message;
        out.guest_bytes += uint64_t{batch_pages_} * ps;
        out.wire_bytes += bytes;
        ++out.messages;
        out.counts += encoder.counts();
        governor_.record(uint64_t{batch_pages_} * ps);
        RS_RETURN_IF_ERROR(drain_acks(queue, sent, acked, out, milliseconds(0)));
      }
    }
    wire::store_data_header(header, wire::DataKind::kEnd, sent.size());
    RS_RETURN_IF_ERROR(sender.send_message(header, {}).status());
    RS_RETURN_IF_ERROR(conn_->flush(queue, milliseconds(60000)));
    const auto give_up = Clock::now() + std::chrono::seconds(60);
    while (acked < sent.size()) {
      if (Clock::now() > give_up)
        return Status(ErrorCode::kTimeout, fmt::format("queue {}: {} batches never acknowledged",
                                                       queue, sent.size() - acked));
      RS_RETURN_IF_ERROR(drain_acks(queue, sent, acked, out, milliseconds(200)));
    }
    return Status::ok();
  }

  BenchResult summarize(std::vector<QueueOutcome>& outcomes, uint64_t cpu_ns,
                        const wire::ServerResult& server) {
    BenchResult r;
    r.point = p_;
    r.transport = conn_->transport_name();
    Clock::time_point end = start_;
    std::vector<double> lat;
    for (auto& o : outcomes) {
      r.guest_bytes += o.guest_bytes;
      r.wire_bytes += o.wire_bytes;
      r.messages += o.messages;
      r.pages_zero += o.counts.zero;
      r.pages_xbzrle += o.counts.xbzrle;
      r.pages_zstd += o.counts.zstd;
      r.pages_raw += o.counts.raw;
      r.pages_placed += o.counts.placed;
      end = std::max(end, o.last_ack);
      lat.insert(lat.end(), o.latencies_ms.begin(), o.latencies_ms.end());
    }
    r.placed = r.pages_placed > 0;
    const transport::LinkStats link = conn_->link_stats();
    r.retransmitted_frames = link.retransmitted_frames;
    r.sent_copied_bytes = link.sent_copied_bytes;
    r.sent_referenced_bytes = link.sent_referenced_bytes;
    if (link.dropped_frames || server.dropped_frames != wire::ServerResult::kNotCounted)
      r.dropped_frames =
          link.dropped_frames.value_or(0) +
          (server.dropped_frames == wire::ServerResult::kNotCounted ? 0 : server.dropped_frames);
    r.seconds = std::chrono::duration<double>(end - start_).count();
    if (r.seconds > 0) {
      r.gbit_per_s = r.wire_bytes * 8 / r.seconds / 1e9;
      r.gbytes_per_s = r.guest_bytes / r.seconds / 1e9;
      r.messages_per_s = r.messages / r.seconds;
    }
    const double gb = r.guest_bytes / 1e9;
    if (gb > 0) {
      r.sender_cpu_s_per_gb = cpu_ns / 1e9 / gb;
      r.receiver_cpu_s_per_gb = server.cpu_ns / 1e9 / gb;
    }
    if (!lat.empty()) {
      auto pct = [&](double f) {
        size_t i = std::min(lat.size() - 1, static_cast<size_t>(f * lat.size()));
        std::nth_element(lat.begin(), lat.begin() + i, lat.end());
        return lat[i];
      };
      r.latency_p50_ms = pct(0.50);
      r.latency_p99_ms = pct(0.99);
    }
    return r;
  }

  const BenchSettings& s_;
  const BenchPoint& p_;
  uint32_t batch_pages_ = 0;
  std::unique_ptr<transport::Connection> conn_;
  MappedMemory gen_[2];
  std::vector<transport::MemoryKey> local_keys_;
  transport::MemoryKey remote_key_;
  bool placing_ = false;
  Clock::time_point start_{}, deadline_{};
  std::atomic<bool> failed_{false};
  // As in a migration: only `auto` adapts; zstd codecs always compress.
  pipeline::CompressionGovernor governor_{pipeline::codec_may_compress(p_.codec),
                                          p_.codec != pipeline::CodecMode::kAuto};
};

}  // namespace

Result<guest::Pattern> parse_bench_pattern(std::string_view name) {
  if (auto p = guest::pattern_from_name(name)) return *p;
  return Status(ErrorCode::kInvalidArgument,
                fmt::format("pattern '{}' is not one of mixed, random, zero, text, delta", name));
}

Result<BenchResult> run_point(const BenchSettings& settings, const BenchPoint& point,
                              const BenchProgress& progress) {
  PointRunner runner(settings, point);
  return runner.run(progress);
}

}  // namespace ramshift::bench
