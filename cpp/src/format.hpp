// Number formatting for error messages, private to the library.
//
// Messages are built with snprintf rather than iostreams: the streams' locale
// machinery is process-global state that can clash when the library is linked
// into a host process carrying another C++ runtime.
#pragma once

#include <cstdio>
#include <string>

namespace heteroagg::detail {

// `x` with up to six significant digits, as an iostream writes it by default.
inline std::string format_number(double x) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", x);
  return text;
}

}  // namespace heteroagg::detail
