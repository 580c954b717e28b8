// Record runs: parsing a buffer of stored records into views, putting a run in ULID order,
// and the one k-way merge by ULID with duplicates dropped (MergeByUlid), which the store
// consumers, compaction, replication receive, the query executor and the query fan-out all
// use. Views point into buffers the caller keeps alive.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string_view>
#include <vector>

#include "common/ulid.h"

namespace oklog {

// The k-way merge of ULID-ordered sources with duplicate ULIDs dropped.
//
// The caller numbers its sources and keeps at most one head per source in the merge: Offer
// puts a source's current head in, Pop takes out the first head in merge order, and the caller
// then offers that source's next head (if it has one). A head is keyed by 26 bytes of ULID
// text: a record's leading ULID, or the bound ULID of a block not read yet (the executor pops
// such a head, reads the block, and offers its first record without emitting anything).
// Order: ascending or descending key; equal keys pop lower source first, so when sources hold
// the same record the lower-numbered source's copy is the one kept.
// Accept is the duplicate gate the caller applies to each record it is about to emit: false
// (and counted) when its ULID equals the last accepted record's. Keys are copied in, so a
// source may grow or move its buffer while its head waits (the fan-out's network buffers do).
// Waiting for a source that has no head yet (a peer whose next line has not arrived) is the
// caller's: it must not Pop while such a source is still open.
class MergeByUlid {
 public:
  enum class Order { kAscending, kDescending };
  struct Head {
    char key[Ulid::kTextSize];
    size_t source;
  };

  explicit MergeByUlid(Order order = Order::kAscending) : descending_(order == Order::kDescending) {}

  // Uses the first 26 bytes of key (zero-padded when shorter: a malformed line still has a
  // place in the order instead of reading past its end).
  void Offer(size_t source, std::string_view key) {
    Head h;
    size_t n = std::min(key.size(), Ulid::kTextSize);
    std::memcpy(h.key, key.data(), n);
    if (n < Ulid::kTextSize) std::memset(h.key + n, 0, Ulid::kTextSize - n);
    h.source = source;
    heap_.push_back(h);
    std::push_heap(heap_.begin(), heap_.end(), After{descending_});
  }
  bool empty() const { return heap_.empty(); }
  size_t size() const { return heap_.size(); }
  Head Pop() {
    std::pop_heap(heap_.begin(), heap_.end(), After{descending_});
    Head h = heap_.back();
    heap_.pop_back();
    return h;
  }
  bool Accept(std::string_view record) {
    if (record.size() >= Ulid::kTextSize && have_last_ && std::memcmp(record.data(), last_, Ulid::kTextSize) == 0) {
      ++duplicates_;
      return false;
    }
    size_t n = std::min(record.size(), Ulid::kTextSize);
    std::memcpy(last_, record.data(), n);
    have_last_ = n == Ulid::kTextSize;
    return true;
  }
  uint64_t duplicates() const { return duplicates_; }

 private:
  struct After {  // heap order: the first head in merge order ends on top
    bool descending;
    bool operator()(const Head& a, const Head& b) const {
      int c = std::memcmp(a.key, b.key, Ulid::kTextSize);
      if (c != 0) return descending ? c < 0 : c > 0;
      return a.source > b.source;
    }
  };
  std::vector<Head> heap_;
  bool descending_;
  bool have_last_ = false;
  char last_[Ulid::kTextSize] = {};
  uint64_t duplicates_ = 0;
};

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
// Merges sorted runs (MergeByUlid), calling emit once per distinct ULID in ascending order (the
// lowest-numbered run's copy wins). Returns the number of duplicates dropped. Stops early when
// emit returns false.
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
