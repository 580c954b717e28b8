// The addresses a node bound, as a file for scripts and tests (-ports.file): with port 0 the
// node picks the port, and this is how the starter learns it.
//
// Format, one listener a line, in the order given:
//   file = { line } ;   line = name "=" host ":" port LF ;
// names are the listen flags' ("api", "ingest.fast", "ingest.durable", "ingest.bulk",
// "cluster"); host is as configured (0.0.0.0 for every interface), IPv6 in brackets.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace oklog {

using BoundPorts = std::vector<std::pair<std::string, std::string>>;  // name, host:port

// The file's text for these addresses.
std::string FormatPorts(const BoundPorts& ports);

// Writes the file so that a reader sees either no file or the whole of it: PATH.tmp first,
// flushed, then renamed over PATH. Blocking; called once at start-up. IOError naming the path.
Status WritePortsFile(const std::string& path, const BoundPorts& ports);

}  // namespace oklog
