// The core of `oklog segment cat|verify|stat FILE`: operator tools over one store segment file.
// Each returns a process exit status (0 success, 1 failure) and writes its report to `out`;
// errors are reported on `out` too, prefixed with the path.
#pragma once

#include <ostream>
#include <string>

namespace oklog {

// Writes the segment's records, exactly as stored ("ULID topic line\n"), in order.
int SegmentCat(const std::string& path, std::ostream& out);
// Checks every block (checksum, LZ4 frame, record syntax, order, counts, topics, filter) and
// the index. Prints "PATH: OK ..." or the first problem found.
int SegmentVerify(const std::string& path, std::ostream& out);
// Prints ranges, block count, sizes, compression ratio and filter bytes.
int SegmentStat(const std::string& path, std::ostream& out);

}  // namespace oklog
