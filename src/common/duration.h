// Go-style durations ("300ms", "1.5h", "2h45m", "168h"), as OK Log's flags and `window` use.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "common/status.h"

namespace oklog {

using Millis = std::chrono::milliseconds;
using Nanos = std::chrono::nanoseconds;

// Parses a Go duration. Units ns, us (µs), ms, s, m, h; a leading sign; "0" alone is allowed.
// Returns InvalidArgument with the offending text otherwise.
Result<Nanos> ParseDuration(std::string_view text);
// Formats like Go's Duration.String(): "1h2m3.5s", "150ms", "0s".
std::string FormatDuration(Nanos d);

}  // namespace oklog
