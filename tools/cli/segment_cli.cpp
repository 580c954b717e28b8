// oklog segment cat|verify|stat FILE...: an operator's look inside store segment files.
#include <iostream>

#include "segments/segment_tool.h"
#include "tools/cli/tools.h"

namespace oklog {

int RunSegment(const std::vector<std::string>& args) {
  const char* usage =
      "Usage: oklog segment cat|verify|stat FILE...\n"
      "  cat     print the records of each segment, exactly as stored\n"
      "  verify  check every block, checksum and the index; exit 1 on the first bad file\n"
      "  stat    ULID range, blocks, sizes, compression ratio, filter bytes\n";
  if (args.empty() || args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
    std::cout << usage;
    return args.empty() ? 1 : 0;
  }
  if (args.size() < 2) {
    std::cerr << usage;
    return 1;
  }
  int (*fn)(const std::string&, std::ostream&) = nullptr;
  if (args[0] == "cat") fn = SegmentCat;
  else if (args[0] == "verify") fn = SegmentVerify;
  else if (args[0] == "stat") fn = SegmentStat;
  else {
    std::cerr << "unknown segment command " << args[0] << "\n" << usage;
    return 1;
  }
  int rc = 0;
  for (size_t i = 1; i < args.size(); ++i) rc |= fn(args[i], std::cout);
  return rc;
}

}  // namespace oklog
