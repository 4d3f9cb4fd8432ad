// unravel._jitload: torch::jit::load with Python's GIL released.
//
// torch.jit.load holds the GIL for the whole deserialization (90-120 ms for a RAVE export),
// and the model thread of every playing [unravel~] needs the GIL once per block: a `load`
// during DSP made them all miss a block or two.  This loads the file without the GIL; the
// Python side (unravel.model) wraps the result as torch.jit.load does, and falls back to
// torch.jit.load when this module is not built.  Built by native/build_jitload.py.
#include <torch/extension.h>
#include <torch/script.h>

static py::object jitload_load(const std::string &path, const std::string &device)
{
    torch::jit::Module module;
    {
        py::gil_scoped_release nogil;
        module = torch::jit::load(path, torch::Device(device));
    }
    return py::cast(module);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("load", &jitload_load, "a TorchScript file as a torch._C.ScriptModule, loaded "
        "without the GIL", py::arg("path"), py::arg("device"));
}
