// `ramshift bench --server`: accepts one configuration per connection, decodes every batch
// into its own copy of the working set (validated like a migration) and acknowledges it.
#include <fmt/format.h>

#include <ctime>
#include <thread>

#include "bench_wire.h"
#include "ramshift/base/log.h"
#include "ramshift/base/mapped_memory.h"
#include "ramshift/bench/throughput.h"
#include "ramshift/pipeline/batch_decoder.h"
#include "ramshift/transport/blocking_send.h"

namespace ramshift::bench {
namespace {

using std::chrono::milliseconds;

uint64_t process_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// Waits for the next message on `queue` (up to `timeout`); kTimeout when none came.
Result<std::span<const std::byte>> next_message(transport::Connection& conn, uint32_t queue,
                                                milliseconds timeout) {
  transport::ConstBuffer msg;
  RS_ASSIGN_OR_RETURN(size_t n, conn.poll(queue, std::span(&msg, 1), timeout));
  if (n == 0) return Status(ErrorCode::kTimeout, "the bench client went quiet");
  return msg;
}

// Replies wait for room at most 30 s, then the run fails with kTimeout.
Status send_message(transport::Connection& conn, uint32_t queue,
                    std::span<const transport::ConstBuffer> segments) {
  return transport::send_blocking(conn, queue, segments, transport::SendWait{milliseconds(30000)});
}

Status send_control(transport::Connection& conn, const std::vector<std::byte>& msg) {
  transport::ConstBuffer seg(msg);
  RS_RETURN_IF_ERROR(send_message(conn, 0, std::span(&seg, 1)));
  return conn.flush(0, milliseconds(10000));
}

struct QueueTally {
  uint64_t batches = 0;
  uint64_t pages = 0;
  Status status;
};

// One data queue: decode each batch, acknowledge it, until End.
void serve_queue(transport::Connection& conn, uint32_t queue, const wire::Config& config,
                 std::span<std::byte> memory, bool placed, QueueTally& tally) {
  pipeline::BatchDecoder decoder(config.page_size, config.batch_pages,
                                 config.cache_bytes / config.queues);
  decoder.allow_placed(placed);
  std::span<std::byte> regions[1] = {memory};
  std::byte ack[wire::kDataHeaderBytes];
  for (;;) {
    auto msg = next_message(conn, queue, milliseconds(60000));
    if (!msg) {
      tally.status = msg.status().with_context(fmt::format("queue {}", queue));
      return;
    }
    auto header = wire::load_data_header(*msg);
    if (!header || header->kind == wire::DataKind::kAck) {
      tally.status =
          header ? Status(ErrorCode::kProtocol, "an Ack from the client") : header.status();
      return;
    }
    if (header->kind == wire::DataKind::kEnd) return;
    auto decoded = decoder.apply(msg->subspan(wire::kDataHeaderBytes), regions);
    if (!decoded) {
      tally.status =
          decoded.status().with_context(fmt::format("queue {} batch {}", queue, header->seq));
      return;
    }
    ++tally.batches;
    tally.pages += decoded->counts.total();
    wire::store_data_header(ack, wire::DataKind::kAck, header->seq);
    transport::ConstBuffer seg(ack, sizeof ack);
    Status s = send_message(conn, queue, std::span(&seg, 1));
    if (!s) {
      tally.status = s;
      return;
    }
  }
}

// One configuration, start to result. The error, if any, is also sent to the client.
Status serve_one(transport::Connection& conn) {
  auto first = next_message(conn, 0, milliseconds(30000));
  if (!first) return first.status();
  auto kind = wire::control_kind(*first);
  if (!kind) return kind.status();
  if (*kind != wire::ControlKind::kConfig)
    return Status(ErrorCode::kProtocol, "the first bench message is not a Config");
  const uint64_t cpu_start = process_cpu_ns();
  RS_ASSIGN_OR_RETURN(wire::Config config, wire::decode_config(*first));
  if (config.queues + 1 != conn.queue_count())
    return Status(ErrorCode::kProtocol,
                  fmt::format("Config names {} data queues on a connection of {} queues",
                              config.queues, conn.queue_count()));
  RS_ASSIGN_OR_RETURN(auto memory, MappedMemory::anonymous(config.working_set_bytes));
  wire::Ready ready;
  if (conn.capabilities().zero_copy_write) {
    auto key =
        config.keys_per_queue
            ? conn.register_memory_per_queue(memory.bytes(), transport::MemoryAccess::kRemoteWrite)
            : conn.register_memory(memory.bytes(), transport::MemoryAccess::kRemoteWrite);
    if (!key) return key.status().with_context("bench working set");
    ready.placed = true;
    ready.key = std::move(key).value();
  }
  RS_RETURN_IF_ERROR(send_control(conn, wire::encode(ready)));

  std::vector<QueueTally> tallies(config.queues);
  std::vector<std::thread> threads;
  for (uint32_t q = 0; q < config.queues; ++q)
    threads.emplace_back([&, q] {
      serve_queue(conn, q + 1, config, memory.bytes(), ready.placed, tallies[q]);
      if (!tallies[q].status) conn.close();  // wake the other queues and the client
    });
  for (auto& t : threads) t.join();
  wire::ServerResult result;
  for (const auto& t : tallies) {
    RS_RETURN_IF_ERROR(t.status);
    result.batches += t.batches;
    result.pages += t.pages;
  }
  RS_ASSIGN_OR_RETURN(auto finish, next_message(conn, 0, milliseconds(60000)));
  RS_ASSIGN_OR_RETURN(auto fkind, wire::control_kind(finish));
  if (fkind != wire::ControlKind::kFinish)
    return Status(ErrorCode::kProtocol, "expected Finish after the data queues ended");
  result.cpu_ns = process_cpu_ns() - cpu_start;
  if (auto dropped = conn.link_stats().dropped_frames) result.dropped_frames = *dropped;
  RS_RETURN_IF_ERROR(send_control(conn, wire::encode(result)));
  // Let the client read the result before the connection goes.
  (void)next_message(conn, 0, milliseconds(5000));
  return Status::ok();
}

}  // namespace

Status serve(const ServerOptions& options, const std::atomic<bool>& stop) {
  transport::TransportOptions topts;
  topts.settings = options.backend_settings;
  RS_ASSIGN_OR_RETURN(auto listener, transport::listen(options.listen, topts));
  if (options.on_listening) options.on_listening(listener->address());
  while (!stop.load()) {
    auto conn = listener->accept(milliseconds(200));
    if (!conn) {
      if (conn.status().code() == ErrorCode::kTimeout) continue;
      log::error("bench server: {}", conn.status().message());
      continue;
    }
    Status s = serve_one(**conn);
    if (!s) {
      log::error("bench server: configuration failed: {}", s.message());
      (void)send_control(**conn, wire::encode_error(s.message()));
    }
    if (options.on_served)
      options.on_served(s ? fmt::format("served {}", (*conn)->describe())
                          : fmt::format("failed {}: {}", (*conn)->describe(), s.message()));
    (*conn)->close();
    if (options.once) return s;
  }
  return Status::ok();
}

}  // namespace ramshift::bench
