// CRC-32C (Castagnoli), as used by iSCSI, ext4 and LevelDB: the checksum of segment blocks and
// indexes. Uses the SSE4.2 crc32 instruction (three interleaved streams) when the CPU has it, a
// table otherwise; both give the same values. Thread-safe (pure functions).
#pragma once

#include <cstddef>
#include <cstdint>

namespace oklog::crc32c {

// The crc32c of data[0, n) appended to a message whose crc32c is `crc` (0 for an empty one).
uint32_t Extend(uint32_t crc, const void* data, size_t n);
inline uint32_t Value(const void* data, size_t n) { return Extend(0, data, n); }

// For tests: the two implementations, and whether the hardware one can run here.
uint32_t ExtendSoftware(uint32_t crc, const void* data, size_t n);
uint32_t ExtendHardware(uint32_t crc, const void* data, size_t n);  // only if HasHardware()
bool HasHardware();

}  // namespace oklog::crc32c
