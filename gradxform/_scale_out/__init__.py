"""Scale-out: populations and PBT, sharding helpers, packed multi-tensor execution, low-bit state.

May import: every other folder of gradxform (this is the top layer).
"""
