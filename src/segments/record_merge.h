// Record runs: parsing a buffer of stored records into views, putting a run in ULID order,
// and k-way merging sorted runs with duplicate ULIDs dropped. Shared by the store consumer,
// compaction and replication receive. Views point into buffers the caller keeps alive.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

namespace oklog {

struct ParseStats {
  uint64_t records = 0;
  uint64_t invalid = 0;  // lines without a canonical ULID, space and topic, or a torn tail
};

// Splits `buf` into records "ULID SP topic SP line LF" (each view includes its LF; the topic is
// not empty). Lines that are not valid records are skipped and counted; a last line without LF
// is a torn write and skipped.
std::vector<std::string_view> ParseRecords(std::string_view buf, ParseStats* stats);
// Sorts by ULID (stable) unless already sorted. Returns true when it had to sort.
bool SortRecords(std::vector<std::string_view>* run);
// Merges sorted runs, calling emit once per distinct ULID in ascending order (the first copy
// wins). Returns the number of duplicates dropped. Stops early when emit returns false.
uint64_t MergeRuns(const std::vector<std::vector<std::string_view>>& runs,
                   const std::function<bool(std::string_view)>& emit);
// The distinct records of several buffers in ULID order: each buffer parsed (invalid lines
// skipped), ordered, and all merged with duplicates dropped. Views point into the buffers.
struct MergedRecords {
  std::vector<std::string_view> records;
  uint64_t bytes = 0;       // of the records kept
  uint64_t invalid = 0;     // lines that were not records
  uint64_t duplicates = 0;  // records dropped as a repeated ULID
};
MergedRecords MergeBuffers(const std::vector<std::string_view>& buffers);
// Whether the 26 bytes at p form a canonical (upper-case Crockford) ULID.
bool IsCanonicalUlid(const char* p);

}  // namespace oklog
