// The --tls-* settings as a user writes them: QEMU's keys.psk lines, the --tls-authz list,
// and the combinations refused before anything connects.
#include "ramshift/security/tls_settings.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "ramshift/transport/channel_security.h"

namespace ramshift::security {
namespace {

const std::string kKey32 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

TEST(PskFile, ReadsQemuKeysPsk) {
  auto entries = parse_psk("# comment\n\nqemu:" + kKey32 + "\nhost-b:" + kKey32 + "\r\n", "k");
  ASSERT_TRUE(entries.is_ok()) << entries.status().message();
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].identity, "qemu");
  EXPECT_EQ((*entries)[1].identity, "host-b");
  ASSERT_EQ((*entries)[0].key.size(), 32u);
  EXPECT_EQ((*entries)[0].key[1], 0x11);
}

TEST(PskFile, NamesTheBadLine) {
  auto no_colon = parse_psk("qemu:" + kKey32 + "\njustakey\n", "keys.psk");
  ASSERT_FALSE(no_colon.is_ok());
  EXPECT_NE(no_colon.status().message().find("keys.psk line 2"), std::string::npos);
  auto not_hex = parse_psk("qemu:zz" + kKey32.substr(2) + "\n", "k");
  EXPECT_NE(not_hex.status().message().find("not hexadecimal"), std::string::npos);
  auto short_key = parse_psk("qemu:0011223344\n", "k");
  EXPECT_NE(short_key.status().message().find("at least 16"), std::string::npos);
  EXPECT_FALSE(parse_psk("# nothing\n", "k").is_ok());
}

TEST(Authz, ListOrFile) {
  auto list = load_authz("CN=a,O=x; CN=b,O=x ;");
  ASSERT_TRUE(list.is_ok());
  EXPECT_EQ(*list, (std::vector<std::string>{"CN=a,O=x", "CN=b,O=x"}));
  const std::string path = testing::TempDir() + "/authz.txt";
  std::ofstream(path) << "# hosts allowed to send\nCN=a,O=x\n\nhost-b\n";
  auto file = load_authz(path);
  ASSERT_TRUE(file.is_ok()) << file.status().message();
  EXPECT_EQ(*file, (std::vector<std::string>{"CN=a,O=x", "host-b"}));
  std::remove(path.c_str());
  EXPECT_EQ(load_authz(path).status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(load_authz(" ; ").status().code(), ErrorCode::kInvalidArgument);
}

TEST(TlsSettings, RefusesWhatCannotWork) {
  transport::BackendSettings both;
  both.set("tls-dir", "/d");
  both.set("tls-psk", "/k");
  EXPECT_FALSE(TlsSettings::from(both).is_ok());
  transport::BackendSettings authz_only;
  authz_only.set("tls-authz", "CN=a");
  EXPECT_FALSE(transport::check_security_settings(authz_only).is_ok());
  transport::BackendSettings missing_dir;
  missing_dir.set("tls-dir", "/nonexistent/pki");
  Status s = transport::check_security_settings(missing_dir);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("ca-cert.pem"), std::string::npos) << s.message();
  EXPECT_TRUE(transport::check_security_settings({}).is_ok());
}

TEST(TlsSettings, BackendsThatCannotAuthenticateRefuseTls) {
  transport::BackendSettings tls;
  tls.set("tls-psk", "/k");
  Status s = transport::refuse_unauthenticated("dpdk", tls);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dpdk:// does not authenticate"), std::string::npos);
  EXPECT_TRUE(transport::refuse_unauthenticated("dpdk", {}).is_ok());
}

}  // namespace
}  // namespace ramshift::security
