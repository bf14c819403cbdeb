// Makes a connected (client, server) pair on a named backend, for suites run on every one.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "ramshift/transport/transport.h"

namespace ramshift::testing {

struct ConnectionPair {
  std::unique_ptr<transport::Listener> listener;
  std::unique_ptr<transport::Connection> client;
  std::unique_ptr<transport::Connection> server;
};

inline ConnectionPair connect_pair(const std::string& backend, uint32_t queues) {
  static std::atomic<int> counter{0};
  ConnectionPair p;
  std::string uri_text = backend == "tcp" ? "tcp://127.0.0.1:0"
                                          : "loopback://conformance-" + std::to_string(counter++);
  auto uri = transport::parse_uri(uri_text).value();
  auto listener = transport::listen(uri);
  EXPECT_TRUE(listener.is_ok()) << listener.status().message();
  if (!listener) return p;
  p.listener = std::move(listener).value();
  auto addr = p.listener->address();
  std::unique_ptr<transport::Connection> server;
  std::thread acceptor([&] {
    auto c = p.listener->accept(std::chrono::seconds(10));
    if (c) server = std::move(c).value();
  });
  auto client = transport::connect(addr, queues);
  acceptor.join();
  EXPECT_TRUE(client.is_ok()) << client.status().message();
  if (client) p.client = std::move(client).value();
  p.server = std::move(server);
  return p;
}

}  // namespace ramshift::testing
