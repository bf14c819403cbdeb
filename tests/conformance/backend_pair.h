// Makes a connected (client, server) pair on a named backend, for suites run on every one.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "ramshift/transport/registry.h"
#include "ramshift/transport/transport.h"

namespace ramshift::testing {

struct ConnectionPair {
  std::unique_ptr<transport::Listener> listener;
  std::unique_ptr<transport::Connection> client;
  std::unique_ptr<transport::Connection> server;
};

// dpdk: one EAL with two ports joined by a link, the listener on port 0 (10.79.0.2) and the
// connecting side on port 1 (10.79.0.1); RAMSHIFT_DPDK_CONFORMANCE_EAL names them, e.g.
// "--no-huge --no-pci --vdev=net_af_packet0,iface=A --vdev=net_af_packet1,iface=B" for the
// two ends of a veth (tests/dpdk/dpdk_conformance_test.sh makes one in a namespace).
inline const char* dpdk_conformance_eal() { return std::getenv("RAMSHIFT_DPDK_CONFORMANCE_EAL"); }

// Where a backend listens in tests. rdma: an address of an RDMA device, from
// RAMSHIFT_RDMA_ADDR (the soft-RoCE VM's rxe0, 10.9.0.1, by default).
inline std::string test_listen_uri(const std::string& backend) {
  static std::atomic<int> counter{0};
  if (backend == "tcp" || backend == "tcp_tls") return "tcp://127.0.0.1:0";
  // dpdk listens on a given port only: a new one per pair, so a lingering close of the
  // previous pair never meets the next.
  if (backend == "dpdk") return "dpdk://10.79.0.2:" + std::to_string(7000 + counter++);
  if (backend == "rdma") {
    const char* addr = std::getenv("RAMSHIFT_RDMA_ADDR");
    return std::string("rdma://") + (addr ? addr : "10.9.0.1") + ":0";
  }
  return "loopback://conformance-" + std::to_string(counter++);
}

// "tcp_tls" is tcp with TLS 1.3 on every queue (a pre-shared key written here, so the suite
// needs no certificates); "dpdk" the two ports above; every other name is a scheme with
// default options.
inline transport::TransportOptions test_options(const std::string& backend,
                                                bool connecting = false) {
  transport::TransportOptions o;
  // Sixteen rdma queues pin and register ~70 MiB at each end: in the emulated (TCG) soft-RoCE
  // VM on a busy host that took over the 10 s default ("no hello from the peer"). The
  // contract is not about set-up speed.
  if (backend == "rdma") o.connect_timeout = std::chrono::seconds(60);
  if (backend == "dpdk" && dpdk_conformance_eal()) {
    o.settings.set("dpdk-eal", dpdk_conformance_eal());
    if (connecting) {
      o.settings.set_number("dpdk-port", 1);
      o.settings.set("dpdk-local-ip", "10.79.0.1");
    }
  }
  if (backend != "tcp_tls") return o;
  static const std::string path = [] {
    std::string p = ::testing::TempDir() + "/conformance-" + std::to_string(::getpid()) + ".psk";
    std::ofstream(p) << "conformance:000102030405060708090a0b0c0d0e0f"
                        "101112131415161718191a1b1c1d1e1f\n";
    return p;
  }();
  o.settings.set("tls-psk", path);
  return o;
}
inline std::string scheme_of(const std::string& backend) {
  return backend == "tcp_tls" ? "tcp" : backend;
}

// Empty when `backend` can run here; otherwise why not (not built, no device).
inline std::string backend_unavailable(const std::string& backend) {
  // Not in this binary: the registry's empty slot says why.
  if (auto b = transport::backends().require(scheme_of(backend)); !b) return b.status().message();
  if (backend == "dpdk" && !dpdk_conformance_eal())
    return "dpdk needs two ports joined by a link: RAMSHIFT_DPDK_CONFORMANCE_EAL (ctest -R "
           "dpdk.conformance sets it up)";
  // A backend with devices (rdma) needs one here: try to listen on it.
  if (!transport::backends().find(scheme_of(backend))->list_devices) return "";
  auto l = transport::listen(transport::parse_uri(test_listen_uri(backend)).value());
  if (l) return "";
  return l.status().message();
}

inline ConnectionPair connect_pair(const std::string& backend, uint32_t queues) {
  ConnectionPair p;
  std::string uri_text = test_listen_uri(backend);
  auto uri = transport::parse_uri(uri_text).value();
  const auto options = test_options(backend);
  auto listener = transport::listen(uri, options);
  EXPECT_TRUE(listener.is_ok()) << listener.status().message();
  if (!listener) return p;
  p.listener = std::move(listener).value();
  auto addr = p.listener->address();
  std::unique_ptr<transport::Connection> server;
  std::thread acceptor([&] {
    auto c = p.listener->accept(
        std::max<transport::Millis>(options.connect_timeout, std::chrono::seconds(10)));
    if (c) server = std::move(c).value();
  });
  auto client = transport::connect(addr, queues, test_options(backend, true));
  acceptor.join();
  EXPECT_TRUE(client.is_ok()) << client.status().message();
  if (client) p.client = std::move(client).value();
  p.server = std::move(server);
  return p;
}

}  // namespace ramshift::testing
