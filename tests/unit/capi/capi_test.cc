// libramshift's C API through the shared library, over real tcp on 127.0.0.1: options and
// regions are checked, a paused guest moves with its device state, and every failure says
// why on both ends while the source guest is left running (paused as often as resumed).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>

#include "ramshift/ramshift.h"

namespace {

struct Mapping {
  explicit Mapping(size_t n) : bytes(n) {
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    data = p == MAP_FAILED ? nullptr : static_cast<unsigned char*>(p);
  }
  ~Mapping() {
    if (data) munmap(data, bytes);
  }
  size_t bytes;
  unsigned char* data;
};

struct Vmm {
  std::atomic<int> pauses{0}, resumes{0};
  int device_state_rc = 0;
  std::string state = "cpu0 rip=0xfff0";
};

ramshift_source_callbacks callbacks(Vmm& vmm) {
  ramshift_source_callbacks cb{};
  cb.opaque = &vmm;
  cb.pause = [](void* o) { static_cast<Vmm*>(o)->pauses++; };
  cb.resume = [](void* o) { static_cast<Vmm*>(o)->resumes++; };
  cb.save_device_state = [](void* o, const void** data, size_t* size) {
    auto* v = static_cast<Vmm*>(o);
    *data = v->state.data();
    *size = v->state.size();
    return v->device_state_rc;
  };
  return cb;
}

// A destination listening on a free port, accepting in a thread.
struct Destination {
  Destination() : handle(ramshift_destination_new()) {}
  ~Destination() {
    if (thread.joinable()) thread.join();
    ramshift_destination_free(handle);
  }
  void start() {
    ASSERT_EQ(ramshift_destination_listen(handle, "tcp://127.0.0.1:0"), RAMSHIFT_OK)
        << ramshift_destination_error(handle);
    thread = std::thread([this] { rc = ramshift_destination_accept(handle, 20000); });
  }
  int finish() {
    thread.join();
    return rc;
  }
  ramshift_destination* handle;
  std::thread thread;
  int rc = -100;
};

TEST(CApi, OptionsAndRegionsAreChecked) {
  EXPECT_STRNE(ramshift_version(), "");
  ramshift_source* s = ramshift_source_new();
  EXPECT_EQ(ramshift_source_set_option(s, "queues", "4"), RAMSHIFT_OK);
  EXPECT_EQ(ramshift_source_set_option(s, "codec", "xbzrle+zstd"), RAMSHIFT_OK);
  EXPECT_EQ(ramshift_source_set_option(s, "max-bandwidth", "1Gbit"), RAMSHIFT_OK);
  EXPECT_EQ(ramshift_source_set_option(s, "queues", "four"), RAMSHIFT_E_INVALID);
  EXPECT_NE(std::string(ramshift_source_error(s)).find("queues"), std::string::npos);
  EXPECT_EQ(ramshift_source_set_option(s, "codec", "lz4"), RAMSHIFT_E_INVALID);
  EXPECT_EQ(ramshift_source_set_option(s, "no-such-option", "1"), RAMSHIFT_E_INVALID);
  EXPECT_NE(std::string(ramshift_source_error(s)).find("no-such-option"), std::string::npos);
  Mapping m(1 << 20);
  EXPECT_EQ(ramshift_source_add_region(s, "ram", m.data + 8, 4096), RAMSHIFT_E_INVALID);
  EXPECT_EQ(ramshift_source_add_region(s, "ram", m.data, 1000), RAMSHIFT_E_INVALID);
  EXPECT_EQ(ramshift_source_migrate(s, "tcp://127.0.0.1:1"), RAMSHIFT_E_INVALID);  // no region
  EXPECT_EQ(ramshift_source_add_region(s, "ram", m.data, m.bytes), RAMSHIFT_OK);
  EXPECT_EQ(ramshift_source_migrate(s, "nonsense"), RAMSHIFT_E_INVALID);
  ramshift_source_callbacks cb{};
  cb.get_dirty_log = [](void*, uint32_t, uint64_t*, uint64_t) { return 0; };
  EXPECT_EQ(ramshift_source_set_callbacks(s, &cb), RAMSHIFT_E_INVALID);  // no pause
  ramshift_source_free(s);
  ramshift_source_free(nullptr);
  EXPECT_EQ(ramshift_error_name(RAMSHIFT_E_DISCONNECTED), std::string("disconnected"));
}

TEST(CApi, UnreachableDestinationSaysSo) {
  Mapping m(1 << 20);
  Vmm vmm;
  ramshift_source* s = ramshift_source_new();
  ASSERT_EQ(ramshift_source_add_region(s, "ram", m.data, m.bytes), RAMSHIFT_OK);
  auto cb = callbacks(vmm);
  ASSERT_EQ(ramshift_source_set_callbacks(s, &cb), RAMSHIFT_OK);
  ASSERT_EQ(ramshift_source_set_option(s, "connect-timeout", "2"), RAMSHIFT_OK);
  // Port 1 on loopback: nothing listens there, the connection is refused.
  EXPECT_EQ(ramshift_source_migrate(s, "tcp://127.0.0.1:1"), RAMSHIFT_E_UNREACHABLE);
  EXPECT_STRNE(ramshift_source_error(s), "");
  EXPECT_EQ(vmm.pauses.load(), 0);
  ramshift_source_free(s);
}

// A paused guest (no dirty log) into memory the destination library keeps itself: the
// device state comes back exactly, and the report says completed.
TEST(CApi, PausedGuestMovesWithDeviceState) {
  Mapping m(8 << 20);
  for (size_t i = 0; i < m.bytes; i += 4096) std::memset(m.data + i, int(i / 4096 % 3), 100);
  Vmm vmm;
  vmm.state.assign(100000, 'x');  // larger than one small frame
  vmm.state[7] = '\0';            // a binary blob, not a C string
  Destination d;
  d.start();
  ramshift_source* s = ramshift_source_new();
  ASSERT_EQ(ramshift_source_add_region(s, "ram", m.data, m.bytes), RAMSHIFT_OK);
  auto cb = callbacks(vmm);
  ASSERT_EQ(ramshift_source_set_callbacks(s, &cb), RAMSHIFT_OK);
  EXPECT_EQ(ramshift_source_migrate(s, ramshift_destination_uri(d.handle)), RAMSHIFT_OK)
      << ramshift_source_error(s);
  ASSERT_EQ(d.finish(), RAMSHIFT_OK) << ramshift_destination_error(d.handle);
  EXPECT_EQ(vmm.pauses.load(), 1);
  EXPECT_EQ(vmm.resumes.load(), 0);  // handed over: the source never resumes it
  const void* data = nullptr;
  size_t size = 0;
  ASSERT_EQ(ramshift_destination_device_state(d.handle, &data, &size), RAMSHIFT_OK);
  EXPECT_EQ(std::string(static_cast<const char*>(data), size), vmm.state);
  EXPECT_NE(std::string(ramshift_source_report_json(s)).find("\"completed\""), std::string::npos);
  ramshift_source_free(s);
}

TEST(CApi, RegionSizeMismatchFailsBothEnds) {
  Mapping src(4 << 20), dst(8 << 20);
  Vmm vmm;
  Destination d;
  ASSERT_EQ(ramshift_destination_add_region(d.handle, "ram", dst.data, dst.bytes), RAMSHIFT_OK);
  d.start();
  ramshift_source* s = ramshift_source_new();
  ASSERT_EQ(ramshift_source_add_region(s, "ram", src.data, src.bytes), RAMSHIFT_OK);
  auto cb = callbacks(vmm);
  ASSERT_EQ(ramshift_source_set_callbacks(s, &cb), RAMSHIFT_OK);
  EXPECT_EQ(ramshift_source_migrate(s, ramshift_destination_uri(d.handle)), RAMSHIFT_E_MISMATCH);
  EXPECT_NE(std::string(ramshift_source_error(s)).find("bytes"), std::string::npos)
      << ramshift_source_error(s);
  EXPECT_EQ(d.finish(), RAMSHIFT_E_MISMATCH);
  EXPECT_EQ(vmm.pauses.load(), vmm.resumes.load());
  ramshift_source_free(s);
}

// The VMM cannot give its device state: the migration fails as the VMM's fault, the guest
// runs again on the source, and the destination is told.
TEST(CApi, FailingCallbackResumesTheSourceGuest) {
  Mapping src(4 << 20), dst(4 << 20);
  Vmm vmm;
  vmm.device_state_rc = -5;
  Destination d;
  ASSERT_EQ(ramshift_destination_add_region(d.handle, "ram", dst.data, dst.bytes), RAMSHIFT_OK);
  d.start();
  ramshift_source* s = ramshift_source_new();
  ASSERT_EQ(ramshift_source_add_region(s, "ram", src.data, src.bytes), RAMSHIFT_OK);
  auto cb = callbacks(vmm);
  ASSERT_EQ(ramshift_source_set_callbacks(s, &cb), RAMSHIFT_OK);
  EXPECT_EQ(ramshift_source_migrate(s, ramshift_destination_uri(d.handle)), RAMSHIFT_E_CALLBACK);
  EXPECT_NE(std::string(ramshift_source_error(s)).find("save_device_state"), std::string::npos)
      << ramshift_source_error(s);
  EXPECT_EQ(vmm.pauses.load(), 1);
  EXPECT_EQ(vmm.resumes.load(), 1);
  EXPECT_NE(d.finish(), RAMSHIFT_OK);
  EXPECT_NE(std::string(ramshift_destination_error(d.handle)).find("save_device_state"),
            std::string::npos)
      << ramshift_destination_error(d.handle);
  ramshift_source_free(s);
}

TEST(CApi, CancelWhileWaitingForASource) {
  Destination d;
  d.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ramshift_destination_cancel(d.handle);
  EXPECT_EQ(d.finish(), RAMSHIFT_E_CANCELLED);
}

}  // namespace
