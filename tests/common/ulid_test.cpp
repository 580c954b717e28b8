#include "common/ulid.h"

#include <gtest/gtest.h>

#include <set>

namespace oklog {
namespace {

TEST(UlidTest, EncodeParseRoundTrip) {
  for (int i = 0; i < 1000; ++i) {
    Ulid u = Ulid::FromParts(RandomU64() >> 16, static_cast<uint16_t>(RandomU64()), RandomU64());
    auto p = Ulid::Parse(u.ToString());
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(*p, u);
  }
}

TEST(UlidTest, KnownValue) {
  // The ULID spec: 1469918176385 ms encodes as 01ARYZ6S41.
  auto u = Ulid::Parse("01ARYZ6S41TSV4RRFFQ69G5FAV");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->unix_ms(), 1469918176385u);
  EXPECT_EQ(u->ToString(), "01ARYZ6S41TSV4RRFFQ69G5FAV");
}

TEST(UlidTest, TextOrderIsValueOrder) {
  Ulid a = Ulid::FromParts(1000, 5, 7), b = Ulid::FromParts(1000, 5, 8), c = Ulid::FromParts(1001, 0, 0);
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_LT(a.ToString(), b.ToString());
  EXPECT_LT(b.ToString(), c.ToString());
}

TEST(UlidTest, RejectsBadInput) {
  EXPECT_FALSE(Ulid::Parse("").has_value());
  EXPECT_FALSE(Ulid::Parse("01ARZ3NDEKTSV4RRFFQ69G5FA").has_value());    // 25 chars
  EXPECT_FALSE(Ulid::Parse("01ARYZ6S41TSV4RRFFQ69G5FAVX").has_value());  // 27 chars
  EXPECT_FALSE(Ulid::Parse("01ARZ3NDEKTSV4RRFFQ69G5FA!").has_value());
  EXPECT_FALSE(Ulid::Parse("81ARZ3NDEKTSV4RRFFQ69G5FAV").has_value());  // overflows 128 bits
  EXPECT_FALSE(Ulid::Parse("01ARZ3NDEKTSV4RRFFQ69G5FUV").has_value());  // U is not Crockford
}

TEST(UlidTest, MinMaxAtBoundTheMillisecond) {
  Ulid lo = Ulid::MinAt(42), hi = Ulid::MaxAt(42);
  EXPECT_EQ(lo.unix_ms(), 42u);
  EXPECT_EQ(hi.unix_ms(), 42u);
  EXPECT_LT(lo, hi);
  EXPECT_LT(hi, Ulid::MinAt(43));
}

TEST(UlidStreamTest, StrictlyIncreasingEvenWhenClockStepsBack) {
  UlidStream s(7, 100);
  Ulid prev = s.Next(5000);
  for (uint64_t t : {5000u, 5001u, 4000u, 4000u, 6000u, 1u}) {
    Ulid u = s.Next(t);
    EXPECT_LT(prev, u);
    EXPECT_LT(prev.ToString(), u.ToString());
    prev = u;
  }
}

TEST(UlidStreamTest, DistinctStreamsDoNotCollide) {
  UlidStream a, b;
  std::set<Ulid> seen;
  for (int i = 0; i < 1000; ++i) {
    EXPECT_TRUE(seen.insert(a.Next(1)).second);
    EXPECT_TRUE(seen.insert(b.Next(1)).second);
  }
}

}  // namespace
}  // namespace oklog
