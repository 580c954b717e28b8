// Go durations (common/duration.h): flags, `window=`, relative query bounds.
//   ParseDuration(text) ok     =>  ParseDuration(FormatDuration(d)) == d
//   any int64 nanoseconds d    =>  FormatDuration(d) parses back to d
#include <string>

#include "common/duration.h"
#include "fuzz_check.h"

using oklog::Nanos;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto d = oklog::ParseDuration(text); d.ok()) {
    const std::string formatted = oklog::FormatDuration(*d);
    auto again = oklog::ParseDuration(formatted);
    if (!again.ok() || *again != *d) {
      std::fprintf(stderr, "parsed %lld ns, formatted \"%s\", parsed again %s\n", static_cast<long long>(d->count()),
                   formatted.c_str(), again.ok() ? std::to_string(again->count()).c_str() : "an error");
    }
    FUZZ_CHECK(again.ok() && *again == *d);
  }
  if (size >= 8) {
    uint64_t u = 0;
    for (size_t i = 0; i < 8; ++i) u = (u << 8) | data[i];
    const Nanos d(static_cast<int64_t>(u));
    const std::string formatted = oklog::FormatDuration(d);
    auto again = oklog::ParseDuration(formatted);
    if (!again.ok() || *again != d) {
      std::fprintf(stderr, "formatted %lld ns as \"%s\", parsed %s\n", static_cast<long long>(d.count()),
                   formatted.c_str(), again.ok() ? std::to_string(again->count()).c_str() : "an error");
    }
    FUZZ_CHECK(again.ok() && *again == d);
  }
  return 0;
}
