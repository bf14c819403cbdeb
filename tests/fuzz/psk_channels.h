// The two ends of a TLS channel with a pre-shared key, for the handshake fuzzers: the key file
// lives in a private temporary directory only while the channels read it.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "ramshift/transport/channel_security.h"

namespace ramshift::fuzz {

struct PskChannels {
  std::shared_ptr<transport::ChannelSecurity> server;
  std::shared_ptr<transport::ChannelSecurity> client;
};

inline PskChannels make_psk_channels() {
  char tmpl[] = "/tmp/tls-fuzz-XXXXXX";
  if (!mkdtemp(tmpl)) std::abort();
  const std::string dir = tmpl;
  const std::string path = dir + "/keys.psk";
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) std::abort();
  std::fputs("fuzz-client:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", f);
  std::fclose(f);
  transport::BackendSettings settings;
  settings.set("tls-psk", path);
  auto server = transport::channel_security(settings, transport::PeerRole::kServer);
  auto client = transport::channel_security(settings, transport::PeerRole::kClient);
  std::filesystem::remove_all(dir);
  if (!server.is_ok() || !client.is_ok()) std::abort();
  return {*server, *client};
}

}  // namespace ramshift::fuzz
