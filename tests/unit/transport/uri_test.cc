#include "ramshift/transport/uri.h"

#include <gtest/gtest.h>

namespace ramshift::transport {
namespace {

TEST(Uri, ParsesTcpRdmaAndLoopback) {
  auto u = parse_uri("tcp://127.0.0.1:7000").value();
  EXPECT_EQ(u.scheme, "tcp");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 7000);
  auto v6 = parse_uri("rdma://[fe80::1]:18515").value();
  EXPECT_EQ(v6.host, "fe80::1");
  EXPECT_EQ(v6.to_string(), "rdma://[fe80::1]:18515");
  EXPECT_EQ(parse_uri("loopback").value().host, "default");
  EXPECT_EQ(parse_uri("loopback://x").value().to_string(), "loopback://x");
  EXPECT_EQ(parse_uri("tcp://localhost:0").value().port, 0);
}

TEST(Uri, AcceptsQemusSchemeColonForm) {
  // What QEMU users type (`migrate tcp:10.0.0.2:4444`) means the same here.
  auto u = parse_uri("tcp:10.0.0.2:4444").value();
  EXPECT_EQ(u.to_string(), "tcp://10.0.0.2:4444");
  EXPECT_EQ(parse_uri("rdma:[fe80::1]:18515").value().to_string(), "rdma://[fe80::1]:18515");
  EXPECT_FALSE(parse_uri("tcp:host"));        // still needs a port
  EXPECT_FALSE(parse_uri("loopback:x"));      // name forms keep their one spelling
  EXPECT_FALSE(parse_uri("unix:/tmp/sock"));  // not a scheme this program serves
}

TEST(Uri, MalformedInputSaysWhatIsWrongAndShowsTheForm) {
  const char* bad[] = {"127.0.0.1:7000",   "tcp://",          "tcp://host", "tcp://host:",
                       "tcp://host:70000", "tcp://host:12ab", "udp://h:1",  "udp:h:1",
                       "tcp://::1:7000",   "tcp://[::1:7000", "tcp://:7000"};
  for (const char* b : bad) {
    auto r = parse_uri(b);
    ASSERT_FALSE(r) << b;
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("tcp://127.0.0.1:7000"), std::string::npos)
        << r.status().message();
  }
}

}  // namespace
}  // namespace ramshift::transport
