"""pipe_split() for models written in Python: marks where a pipeline stage ends, in a TorchScript file
that pippy-cpp (pippy split, pippy-train, pipeline()) then splits there, as PiPPy's pipe_split() does.

    import sys; sys.path.insert(0, "<pippy-cpp>/python")
    from pippy_pipe_split import pipe_split

    def forward(self, x):
        x = self.layer0(x)
        pipe_split()           # stage 0 ends here
        return self.layer1(x)

torch.jit.trace and torch.jit.script both record it as the operator pippy::pipe_split, which pippy-cpp's
compiler declares with the same schema; in Python it does nothing. Conservative alias analysis keeps the
tracer from dropping a call without inputs or outputs.
"""
import torch

_library = torch.library.Library("pippy", "DEF")
_library.define("pipe_split() -> ()", alias_analysis="CONSERVATIVE")
_library.impl("pipe_split", lambda: None, "CompositeExplicitAutograd")


def pipe_split() -> None:
    torch.ops.pippy.pipe_split()
