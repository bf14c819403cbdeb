#include "ramshift/transport/registry.h"

#include <gtest/gtest.h>

namespace ramshift::transport {
namespace {

Backend fake(const std::string& scheme) {
  Backend b;
  b.scheme = scheme;
  b.listen = [](const Uri&, const TransportOptions&) -> Result<std::unique_ptr<Listener>> {
    return Status(ErrorCode::kIo, "fake listen");
  };
  b.connect = [](const Uri&, uint32_t,
                 const TransportOptions&) -> Result<std::unique_ptr<Connection>> {
    return Status(ErrorCode::kIo, "fake connect");
  };
  return b;
}

TEST(Registry, UnknownSchemeIsRefusedAndNamed) {
  BackendRegistry r;
  EXPECT_EQ(r.find("warp"), nullptr);
  auto b = r.require("warp");
  ASSERT_FALSE(b);
  EXPECT_EQ(b.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("'warp'"), std::string::npos) << b.status().message();
  // parse_uri asks the process's registry: a scheme nobody registers is malformed input.
  auto u = parse_uri("warp://h:1");
  ASSERT_FALSE(u);
  EXPECT_NE(u.status().message().find("unknown scheme 'warp'"), std::string::npos);
}

TEST(Registry, EmptySlotSaysItIsNotBuiltAndWhy) {
  BackendRegistry r;
  Backend slot;
  slot.scheme = "warp";
  slot.absent_reason = "the warp backend is not implemented yet";
  ASSERT_TRUE(r.add(std::move(slot)));
  ASSERT_NE(r.find("warp"), nullptr);
  EXPECT_FALSE(r.find("warp")->available());
  auto b = r.require("warp");
  ASSERT_FALSE(b);
  EXPECT_EQ(b.status().code(), ErrorCode::kInvalidArgument);
  const std::string why = b.status().message();
  EXPECT_NE(why.find("not available in this build"), std::string::npos) << why;
  EXPECT_NE(why.find("not implemented yet"), std::string::npos) << why;
}

// dpdk/ registers in every build: the backend where libdpdk was found at configure, an empty
// slot that says why otherwise (the `minimal` preset). Either way `dpdk://` is never an
// unknown scheme.
TEST(Registry, DpdkIsTheBackendOrAnHonestEmptySlot) {
  const Backend* dpdk = backends().find("dpdk");
  ASSERT_NE(dpdk, nullptr) << "dpdk/ registers itself in every build";
  if (dpdk->available()) {
    EXPECT_TRUE(dpdk->listen && dpdk->connect);
    EXPECT_TRUE(dpdk->check_settings) << "the dpdk-* settings are checked by the backend";
    EXPECT_TRUE(dpdk->absent_reason.empty());
    return;
  }
  auto l = listen(parse_uri("dpdk://127.0.0.1:7000").value());
  ASSERT_FALSE(l);
  EXPECT_NE(l.status().message().find("not available in this build"), std::string::npos);
  EXPECT_NE(l.status().message().find(dpdk->absent_reason), std::string::npos);
}

TEST(Registry, DuplicateRegistrationIsRefusedAndTheFirstStays) {
  BackendRegistry r;
  Backend first = fake("warp");
  first.summary = "first";
  ASSERT_TRUE(r.add(std::move(first)));
  Backend second = fake("warp");
  second.summary = "second";
  Status s = r.add(std::move(second));
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("registered already"), std::string::npos) << s.message();
  EXPECT_EQ(r.find("warp")->summary, "first");
  EXPECT_EQ(r.all().size(), 1u);
  // The process's registry refuses a second tcp the same way.
  EXPECT_FALSE(backends().add(fake("tcp")));
}

TEST(Registry, AnAvailableBackendNeedsBothFactories) {
  BackendRegistry r;
  Backend b = fake("warp");
  b.connect = nullptr;
  EXPECT_EQ(r.add(std::move(b)).code(), ErrorCode::kInvalidArgument);
  Backend nameless = fake("");
  EXPECT_EQ(r.add(std::move(nameless)).code(), ErrorCode::kInvalidArgument);
}

TEST(Registry, CapabilitiesAreLookedUpByScheme) {
  BackendRegistry r;
  Backend b = fake("warp");
  b.traits.one_sided_write = true;
  b.traits.preferred_batch_bytes = 2u << 20;
  ASSERT_TRUE(r.add(std::move(b)));
  ASSERT_NE(r.find("warp"), nullptr);
  EXPECT_TRUE(r.find("warp")->traits.one_sided_write);
  EXPECT_FALSE(r.find("warp")->traits.remote_read);
  EXPECT_EQ(r.find("warp")->traits.preferred_batch_bytes, 2u << 20);
  // The built-ins state no preference and have no one-sided writes.
  for (const char* scheme : {"loopback", "tcp"}) {
    const Backend* builtin = backends().find(scheme);
    ASSERT_NE(builtin, nullptr) << scheme;
    EXPECT_TRUE(builtin->available()) << scheme;
    EXPECT_EQ(builtin->traits.preferred_batch_bytes, 0u) << scheme;
    EXPECT_FALSE(builtin->traits.one_sided_write) << scheme;
  }
  // rdma is known in every build (an empty slot without verbs), with its static traits.
  const Backend* rdma = backends().find("rdma");
  ASSERT_NE(rdma, nullptr);
  EXPECT_TRUE(rdma->traits.one_sided_write);
  EXPECT_EQ(rdma->traits.preferred_batch_bytes, 1u << 20);
}

TEST(Registry, DevicesOfABackendWithoutThemAreRefused) {
  EXPECT_EQ(list_devices("tcp").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(device_address("loopback").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(list_devices("dpdk").status().code(), ErrorCode::kInvalidArgument);
}

TEST(Settings, NumbersAndFlagsAreReadOrRefusedByName) {
  BackendSettings s;
  s.set_number("warp-depth", 64);
  s.set_flag("warp-spin", true);
  s.set("warp-bad", "12ab");
  EXPECT_EQ(s.number("warp-depth", 1).value(), 64u);
  EXPECT_EQ(s.number("warp-absent", 7).value(), 7u);
  EXPECT_TRUE(s.flag("warp-spin", false).value());
  auto bad = s.number("warp-bad", 0);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("--warp-bad 12ab"), std::string::npos);
  // Settings no available backend owns pass the process-wide check untouched.
  EXPECT_TRUE(check_settings(s));
}

}  // namespace
}  // namespace ramshift::transport
