// Enters rdma:// in the backend registry when this library is linked (whole, see
// CMakeLists.txt: nothing else refers to this file's registrar).
#include "backend_entry.h"
#include "host_limits.h"
#include "rdma.h"
#include "rdma_tuning.h"

namespace ramshift::transport::rdma {
namespace {

Backend available_backend() {
  Backend b = describe_backend();
  b.listen = listen;
  b.connect = connect;
  b.check_settings = [](const BackendSettings& s) {
    return tuning_from(s, ReceiveLoad::kBulk).status();
  };
  b.list_devices = []() -> Result<std::vector<Device>> { return describe_devices(); };
  b.device_address = device_address;
  return b;
}

const BackendRegistrar kRegistered(available_backend());

}  // namespace
}  // namespace ramshift::transport::rdma
