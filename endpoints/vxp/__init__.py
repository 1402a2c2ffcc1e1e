"""The VPCP SDK facade (``/vxp``): existing agency software built on the Government Office's Java SDK talks to
axis unchanged. :mod:`endpoints.vxp.protocol` is the wire format (signed headers, answers), :mod:`endpoints.vxp.mapping`
what each call answers from axis's rows, :mod:`endpoints.vxp.internal` the in-process ``/v1`` calls, and
:mod:`endpoints.vxp.facade` the ASGI app that ties them together (its docstring lists the decisions)."""
