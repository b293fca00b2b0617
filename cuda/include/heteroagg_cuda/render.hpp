// Host entry point of the CUDA LUT renderer: the twin of
// heteroagg::render_haadf_batch.
#pragma once

#include <cstddef>
#include <vector>

#include "heteroagg/render.hpp"

namespace heteroagg::cuda {

// Renders inputs[i] into image i of `images` (B x ny x nx, row-major float32),
// which lives in device memory when `images_on_device` is true (a CuPy array
// or a torch tensor, say) and in host memory otherwise.  outputs[i] receives
// the rotation, the field centre and `clipped`; its buffers must be null
// (label maps are drawn by the CPU renderer).  The images agree with the CPU
// renderer's to single-precision rounding, and shot noise draws the same
// streams.  Many aggregates go to the device per launch; each pixel keeps
// its beam path's covered intervals in a fixed list, and an image whose
// paths need more (far beyond realistic aggregates) is drawn by the CPU
// renderer instead.  Host-side projection runs on `threads` workers (0: all
// cores).  Throws what render_haadf throws for the same input, and
// std::runtime_error for CUDA errors.
void render_haadf_batch(const std::vector<render_input>& inputs, const render_settings& settings,
                        std::vector<render_output>& outputs, float* images, bool images_on_device,
                        unsigned threads = 0);

}  // namespace heteroagg::cuda
