// One source and one destination in this process, over tcp on 127.0.0.1 or loopback://: the
// harness the live, lost-dirty-page and post-copy tests share. The destination runs its guest
// for 300 ms after taking it over and hands the test its memory as verified (post-copy: once
// the guest ran there and was paused), to compare byte for byte with the paused source's.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "ramshift/migration/destination.h"
#include "ramshift/migration/source.h"
#include "ramshift/transport/transport.h"

namespace ramshift::migration::pair_test {

// A fresh address for `backend` ("tcp" or "loopback"): loopback names are unique per call.
inline transport::Uri listen_uri(const std::string& backend) {
  static int n = 0;
  return transport::parse_uri(backend == "tcp" ? "tcp://127.0.0.1:0"
                                               : "loopback://pair-" + std::to_string(n++))
      .value();
}

struct Outcome {
  MigrationReport source, destination;
  std::vector<std::byte> destination_memory;  // the first region, as inspect_memory saw it
};

inline Outcome migrate(const std::string& backend, guest::SourceGuest& g, SourceConfig sc,
                       DestinationConfig dc = {}) {
  using namespace std::chrono_literals;
  auto listener = transport::listen(listen_uri(backend)).value();
  sc.to = listener->address();
  Outcome out;
  std::thread dest([&] {
    auto conn = listener->accept(10s);
    ASSERT_TRUE(conn.is_ok());
    dc.resume_for = 300ms;
    dc.inspect_memory = [&](const std::vector<std::span<const std::byte>>& regions) {
      out.destination_memory.assign(regions[0].begin(), regions[0].end());
    };
    out.destination = run_destination(std::move(conn).value(), dc);
  });
  out.source = run_source(g, sc);
  dest.join();
  return out;
}

}  // namespace ramshift::migration::pair_test
