// The transport's post/poll path per backend (Google Benchmark): one thread posts a burst
// of messages on a queue and polls them back on the peer connection, so the figure is the
// backend's own cost per message (copies, system calls, wake-ups), without a network.
// Backends compiled in and usable here: loopback, tcp on 127.0.0.1 (rdma runs in the
// soft-RoCE VM: bench/softroce_bench.sh).
#include <benchmark/benchmark.h>

#include <thread>
#include <vector>

#include "ramshift/transport/transport.h"

namespace {

using namespace ramshift;
using std::chrono::milliseconds;
constexpr int kBurst = 16;

struct Pair {
  std::unique_ptr<transport::Connection> tx, rx;
};

Result<Pair> connect_pair(const std::string& scheme) {
  transport::Uri uri{scheme, scheme == "tcp" ? "127.0.0.1" : "bench-pair", 0};
  RS_ASSIGN_OR_RETURN(auto listener, transport::listen(uri));
  Result<std::unique_ptr<transport::Connection>> tx = Status(ErrorCode::kCancelled, "not run");
  std::thread t([&] { tx = transport::connect(listener->address(), 1); });
  auto rx = listener->accept(milliseconds(10000));
  t.join();
  if (!tx) return tx.status();
  if (!rx) return rx.status();
  return Pair{std::move(tx).value(), std::move(rx).value()};
}

void BM_Transport_PostPoll(benchmark::State& state, const std::string& scheme) {
  auto pair = connect_pair(scheme);
  if (!pair) return state.SkipWithError(pair.status().message().c_str());
  std::vector<std::byte> payload(static_cast<size_t>(state.range(0)), std::byte{0x5a});
  transport::ConstBuffer seg(payload);
  transport::ConstBuffer got[kBurst];
  for (auto _ : state) {
    int posted = 0, received = 0;
    while (received < kBurst) {
      while (posted < kBurst) {
        Status s = pair->tx->post_send(0, std::span(&seg, 1));
        if (s.code() == ErrorCode::kWouldBlock) break;  // drain the peer, then post more
        if (!s) return state.SkipWithError(s.message().c_str());
        ++posted;
      }
      (void)pair->tx->flush(0, milliseconds(0));
      auto n = pair->rx->poll(0, std::span(got, kBurst - received), milliseconds(1000));
      if (!n) return state.SkipWithError(n.status().message().c_str());
      received += static_cast<int>(*n);
    }
  }
  state.SetBytesProcessed(state.iterations() * kBurst * state.range(0));
  state.SetItemsProcessed(state.iterations() * kBurst);
}
BENCHMARK_CAPTURE(BM_Transport_PostPoll, loopback, std::string("loopback"))
    ->Arg(4096)
    ->Arg(64 << 10)
    ->Arg(1 << 20);
BENCHMARK_CAPTURE(BM_Transport_PostPoll, tcp, std::string("tcp"))
    ->Arg(4096)
    ->Arg(64 << 10)
    ->Arg(1 << 20);

}  // namespace

BENCHMARK_MAIN();
