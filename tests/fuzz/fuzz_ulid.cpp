// ULID text and bytes (common/ulid.h), segment file names (SegmentName), the canonical-ULID
// check of stored records, and the ULID runs bulk ingest derives from a segment id.
//   Parse(text) ok  =>  Parse(ToString()) is the same ULID, and the text is canonical exactly
//                       when it equals ToString()
//   any 16 bytes    =>  ToString() parses back to them
//   SegmentName     =>  Parse(FileName()) is the same name
//   RunFits(u, n)   =>  a stream At(u) issues u first, then strictly increasing ULIDs
#include <cstring>
#include <string>

#include "common/ulid.h"
#include "fuzz_check.h"
#include "segments/record_merge.h"
#include "segments/segment_file.h"

using oklog::Ulid;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto u = Ulid::Parse(text)) {
    const std::string canonical = u->ToString();
    FUZZ_CHECK(canonical.size() == Ulid::kTextSize);
    FUZZ_CHECK(Ulid::Parse(canonical) == u);
    FUZZ_CHECK(Ulid::ParseCanonical(canonical.data()) == u);
    FUZZ_CHECK(oklog::IsCanonicalUlid(text.data()) == (text == canonical));
    FUZZ_CHECK(Ulid::MinAt(u->unix_ms()) <= *u && *u <= Ulid::MaxAt(u->unix_ms()));
  } else if (size == Ulid::kTextSize) {
    FUZZ_CHECK(!oklog::IsCanonicalUlid(text.data()));
  }

  if (size >= 16) {
    const Ulid u = Ulid::FromBytes(data);
    const std::string s = u.ToString();
    FUZZ_CHECK(Ulid::Parse(s) == u);
    FUZZ_CHECK(oklog::IsCanonicalUlid(s.data()));
    FUZZ_CHECK(std::memcmp(u.bytes().data(), data, 16) == 0);

    // A bulk segment's id and a record count from the next bytes.
    uint64_t n = 0;
    for (size_t i = 16; i < size && i < 24; ++i) n = (n << 8) | data[i];
    if (oklog::UlidStream::RunFits(u, n)) {
      oklog::UlidStream s1 = oklog::UlidStream::At(u);
      FUZZ_CHECK(s1.NextRun(u.unix_ms(), n) == u);
      FUZZ_CHECK(!s1.saturated());
      oklog::UlidStream s2 = oklog::UlidStream::At(u);
      Ulid prev = s2.Next(u.unix_ms());
      FUZZ_CHECK(prev == u);
      const uint64_t steps = n < 64 ? n : 64;
      for (uint64_t i = 1; i < steps; ++i) {
        const Ulid next = s2.Next(u.unix_ms());
        FUZZ_CHECK(prev < next);
        prev = next;
      }
      FUZZ_CHECK(!s2.saturated());
    }
  }

  if (auto name = oklog::SegmentName::Parse(text)) {
    const std::string file = name->FileName();
    auto again = oklog::SegmentName::Parse(file);
    FUZZ_CHECK(again && again->low == name->low && again->high == name->high);
    FUZZ_CHECK(again->FileName() == file);
  }
  return 0;
}
