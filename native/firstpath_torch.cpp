// unravel_first.so: the first path's model through libtorch alone, no Python (see
// native/firstpath.c, which loads this library once torch's own are loaded, and
// unravel/firstpath.py).  Built by native/build_firstpath.py against the torch it was built
// for; UNRAVEL_TORCH_VERSION is that torch's version, which the C side checks before loading.
#include <torch/script.h>
#include <ATen/Parallel.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#ifndef UNRAVEL_TORCH_VERSION
#error "build with -DUNRAVEL_TORCH_VERSION=\"<torch.__version__>\""
#endif

namespace {

struct First {
    torch::jit::Module module;
    std::string method;
    int in_chans, in_frames, out_chans, out_frames;
};

void seterr(char *err, int size, const char *what, const char *cause)
{
    std::string s(cause);
    size_t nl = s.find('\n');      // torch's messages run over many lines: the first
    std::snprintf(err, size, "%s: %s", what, s.substr(0, nl).c_str());
}

// one call of the method on in (in_chans x in_frames) into out (out_chans x out_frames):
// missing output channels and frames are zeros; -1 when the output is not finite.
// TorchScript's graph optimizer is off on this thread (its flag is the thread's): the
// optimizer profiles the first call and optimizes at the second, 0.3-0.6 s each on a RAVE
// export, for calls that are then at best 10 % faster (bench/README.md, "The first path")
int run(First *f, const float *in, float *out)
{
    c10::InferenceMode guard;
    torch::jit::GraphOptimizerEnabledGuard plain(false);
    at::globalContext().setFlushDenormal(true);    // as unravel.model runs (the caller's
                                                  // thread mode is restored by worker.c)
    auto x = torch::from_blob(const_cast<float *>(in), {1, f->in_chans, f->in_frames});
    auto y = f->module.get_method(f->method)({x}).toTensor();
    if (y.dim() != 3 || y.size(0) != 1)
        return -1;
    y = y[0].to(torch::kFloat32).contiguous();
    int64_t c = std::min<int64_t>(y.size(0), f->out_chans);
    int64_t n = std::min<int64_t>(y.size(1), f->out_frames);
    const float *p = y.data_ptr<float>();
    std::memset(out, 0, sizeof(float) * f->out_chans * f->out_frames);
    for (int64_t i = 0; i < c; i++)
        for (int64_t k = 0; k < n; k++)
        {
            float v = p[i * y.size(1) + k];
            if (!std::isfinite(v))
                return -1;
            out[i * f->out_frames + k] = v;
        }
    return 0;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) const char *unravel_first_torch(void)
{
    return UNRAVEL_TORCH_VERSION;
}

// load the model on the CPU and run the method once on silence; 0 with the cause in err
// when it cannot
__attribute__((visibility("default"))) void *unravel_first_load(const char *path,
    const char *method, int in_chans, int in_frames, int out_chans, int out_frames, char *err,
    int errsize)
{
    First *f = nullptr;
    try
    {
        at::set_num_threads(1);     // as the bridge sets it
        f = new First{torch::jit::load(path, torch::kCPU), method, in_chans, in_frames,
            out_chans, out_frames};
        f->module.eval();
        if (!f->module.find_method(method))
            throw std::runtime_error(std::string("no method ") + method);
        std::vector<float> in((size_t)in_chans * in_frames), out((size_t)out_chans * out_frames);
        if (run(f, in.data(), out.data()) != 0)
            throw std::runtime_error("its output on silence is not finite");
        return f;
    }
    catch (const std::exception &e)
    {
        seterr(err, errsize, path, e.what());
    }
    delete f;
    return nullptr;
}

__attribute__((visibility("default"))) int unravel_first_run(void *model, const float *in,
    float *out)
{
    try
    {
        return run(static_cast<First *>(model), in, out);
    }
    catch (const std::exception &)
    {
        return -1;
    }
}

__attribute__((visibility("default"))) void unravel_first_free(void *model)
{
    delete static_cast<First *>(model);
}

}  // extern "C"
