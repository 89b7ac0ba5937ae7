# _core.pyx -- the compiled core of autograd_c, one extension module.
#
# docs/architecture.md describes the whole system; in short:
#   ops.h            one line per opcode: forward value and local adjoint
#   tape.h, tape.c   the Wengert list in C arrays, the sweep, mark-compact
#   higher.h/.cpp    forward mode, forward-over-reverse, create_graph's recorder numbers
#   this module      everything Python sees, in include files by concern:
#     tape_memory.pxi    each thread's Tape: reset, growth, compaction, buffers
#     variable.pxi       the Variable type and its allocation pool
#     record.pxi         recording operations; the public math functions
#     backward.pxi       the reverse sweep's wrapper and gradient delivery
#     functions.pxi      custom Functions (AC_CUSTOM nodes)
#     tracing.pxi        tracing a function for ag.compile: guards, ConcretizationError
#     replay.pxi         compiled functions: compiling a trace, evaluating it (replay*.c)
#     replay_args.pxi    compiled functions' arguments: shapes, values, rows, gradients
#     higher.pxi         the functional API: jvp, vjp, hvp, hessian, jacobian sweeps
#     create_graph.pxi   create_graph=True: the backward pass recorded as nodes
#     kernels.pxi        nn layers and optimiser steps in one call each
#     introspection.pxi  grad modes, leaves/graph_size, micrograd's _prev/_op
# Includes (not separate modules) keep every call from the arithmetic slots
# to the C arrays inlinable, exactly as in one file.
# Nothing sits between the arithmetic slots and the C arrays except type
# checks and field reads; Python objects are only touched where a Variable
# is created, destroyed or handed its gradient.
cimport cython
from cpython.object cimport PyObject, PyTypeObject, destructor
from cpython.ref cimport Py_INCREF, Py_DECREF
from cpython.float cimport PyFloat_CheckExact, PyFloat_Check, PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_CheckExact, PyLong_Check
from libc.math cimport isfinite, isnan, NAN, pow
from libc.math cimport sqrt as sqrt_c
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memset
from libc.stdint cimport int64_t, uint64_t, uint32_t, uint8_t

from tape cimport *

import sys
import threading

cdef extern from "Python.h":
    double PyLong_AsDouble(object o) except? -1.0
    unsigned long PyThread_get_thread_ident()
    int PyErr_CheckSignals() except -1

# Variable.kind
cdef enum:
    K_CONST = 0      # a number: requires_grad=False, made under no_grad, or from constants only
    K_LEAF = 1       # a user-made Variable that requires grad; lives outside the tape
    K_NODE = 2       # a recorded result: (tape, index) on its thread's tape
    K_RELEASED = 3   # a recorded result whose graph was released (see Tape._compact)

include "tape_memory.pxi"
include "variable.pxi"
include "record.pxi"
include "backward.pxi"
include "functions.pxi"
include "tracing.pxi"
include "replay.pxi"
include "replay_args.pxi"
include "replay_second.pxi"
include "higher.pxi"
include "create_graph.pxi"
include "kernels.pxi"
include "introspection.pxi"
