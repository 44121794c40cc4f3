"""Boykov-Kolmogorov max-flow / min-cut, compiled with Numba (imported lazily by methods.grabcut).

Boykov & Kolmogorov, "An Experimental Comparison of Min-Cut/Max-Flow Algorithms for Energy
Minimization in Vision", IEEE TPAMI 26(9), 2004. Two search trees grow from the source S and
the sink T through non-saturated arcs; when they touch, flow is pushed along the path found
(augmentation); nodes cut off from their tree by saturated arcs become orphans and look for a
new parent in their own tree (adoption) or become free. We follow the paper's algorithm, with
the timestamp/distance heuristic for choosing parents described in its section 3.2.

The graph is in CSR form: node ``i``'s outgoing arcs are ``first[i]:first[i+1]``, ``head[a]`` is
where arc ``a`` goes, ``sister[a]`` the reverse arc, ``r_cap[a]`` its residual capacity. The
terminal arcs of node ``i`` are folded into ``tr_cap[i]``: positive = residual capacity from
S to i, negative = from i to T (the caller has already pushed min(source, sink) straight
through). Both are modified in place.
"""

import numpy as np
from numba import njit

NONE = -1       # free node
TERMINAL = -2   # parent is S or T itself
ORPHAN = -3     # lost its parent during this augmentation
INF_D = 1 << 60


@njit(cache=True)
def bk_maxflow(first, head, sister, r_cap, tr_cap):
    """Run max-flow; returns (flow pushed through non-terminal paths, in_source[n] bool).

    ``in_source[i]`` is True for the nodes reachable from S in the final residual graph
    (the minimal source set of a minimum cut)."""
    n = first.shape[0] - 1
    parent = np.full(n, NONE, np.int64)
    is_sink = np.zeros(n, np.bool_)
    ts = np.zeros(n, np.int64)
    dist = np.zeros(n, np.int64)
    size = n + 1
    active = np.empty(size, np.int64)     # FIFO of active nodes
    a_head = 0
    a_tail = 0
    is_active = np.zeros(n, np.bool_)
    orphans = np.empty(size, np.int64)    # deque of orphans
    o_head = 0
    o_tail = 0
    flow = 0.0
    time = 0

    for i in range(n):
        if tr_cap[i] != 0:
            parent[i] = TERMINAL
            is_sink[i] = tr_cap[i] < 0
            dist[i] = 1
            active[a_tail] = i
            a_tail = (a_tail + 1) % size
            is_active[i] = True

    current = -1
    while True:
        # ----- next active node
        i = -1
        if current >= 0:
            i = current
            is_active[i] = False
            if parent[i] == NONE:
                i = -1
        if i < 0:
            while a_head != a_tail:
                k = active[a_head]
                a_head = (a_head + 1) % size
                is_active[k] = False
                if parent[k] != NONE:
                    i = k
                    break
            if i < 0:
                break

        # ----- growth
        middle = -1
        if not is_sink[i]:
            for a in range(first[i], first[i + 1]):
                if r_cap[a] > 0:
                    j = head[a]
                    if parent[j] == NONE:
                        is_sink[j] = False
                        parent[j] = sister[a]
                        ts[j] = ts[i]
                        dist[j] = dist[i] + 1
                        if not is_active[j]:
                            is_active[j] = True
                            active[a_tail] = j
                            a_tail = (a_tail + 1) % size
                    elif is_sink[j]:
                        middle = a
                        break
                    elif ts[j] <= ts[i] and dist[j] > dist[i]:
                        parent[j] = sister[a]
                        ts[j] = ts[i]
                        dist[j] = dist[i] + 1
        else:
            for a in range(first[i], first[i + 1]):
                if r_cap[sister[a]] > 0:
                    j = head[a]
                    if parent[j] == NONE:
                        is_sink[j] = True
                        parent[j] = sister[a]
                        ts[j] = ts[i]
                        dist[j] = dist[i] + 1
                        if not is_active[j]:
                            is_active[j] = True
                            active[a_tail] = j
                            a_tail = (a_tail + 1) % size
                    elif not is_sink[j]:
                        middle = sister[a]
                        break
                    elif ts[j] <= ts[i] and dist[j] > dist[i]:
                        parent[j] = sister[a]
                        ts[j] = ts[i]
                        dist[j] = dist[i] + 1
        time += 1
        if middle < 0:
            current = -1
            continue
        current = i
        is_active[i] = True

        # ----- augmentation along S ... head[sister[middle]] -> head[middle] ... T
        bottleneck = r_cap[middle]
        k = head[sister[middle]]
        while parent[k] != TERMINAL:
            a = parent[k]
            if r_cap[sister[a]] < bottleneck:
                bottleneck = r_cap[sister[a]]
            k = head[a]
        if tr_cap[k] < bottleneck:
            bottleneck = tr_cap[k]
        k = head[middle]
        while parent[k] != TERMINAL:
            a = parent[k]
            if r_cap[a] < bottleneck:
                bottleneck = r_cap[a]
            k = head[a]
        if -tr_cap[k] < bottleneck:
            bottleneck = -tr_cap[k]

        r_cap[sister[middle]] += bottleneck
        r_cap[middle] -= bottleneck
        k = head[sister[middle]]
        while parent[k] != TERMINAL:
            a = parent[k]
            r_cap[a] += bottleneck
            r_cap[sister[a]] -= bottleneck
            nxt = head[a]
            if r_cap[sister[a]] <= 0:
                parent[k] = ORPHAN
                o_head = (o_head - 1) % size
                orphans[o_head] = k
            k = nxt
        tr_cap[k] -= bottleneck
        if tr_cap[k] <= 0:
            parent[k] = ORPHAN
            o_head = (o_head - 1) % size
            orphans[o_head] = k
        k = head[middle]
        while parent[k] != TERMINAL:
            a = parent[k]
            r_cap[sister[a]] += bottleneck
            r_cap[a] -= bottleneck
            nxt = head[a]
            if r_cap[a] <= 0:
                parent[k] = ORPHAN
                o_head = (o_head - 1) % size
                orphans[o_head] = k
            k = nxt
        tr_cap[k] += bottleneck
        if tr_cap[k] >= 0:
            parent[k] = ORPHAN
            o_head = (o_head - 1) % size
            orphans[o_head] = k
        flow += bottleneck

        # ----- adoption
        while o_head != o_tail:
            i2 = orphans[o_head]
            o_head = (o_head + 1) % size
            sink_side = is_sink[i2]
            d_min = INF_D
            a0_min = -1
            for a0 in range(first[i2], first[i2 + 1]):
                residual = r_cap[a0] if sink_side else r_cap[sister[a0]]
                if residual <= 0:
                    continue
                j = head[a0]
                if is_sink[j] != sink_side or parent[j] == NONE:
                    continue
                d = 0
                while True:
                    if ts[j] == time:
                        d += dist[j]
                        break
                    a = parent[j]
                    d += 1
                    if a == TERMINAL:
                        ts[j] = time
                        dist[j] = 1
                        break
                    if a == ORPHAN:
                        d = INF_D
                        break
                    j = head[a]
                if d < INF_D:
                    if d < d_min:
                        a0_min = a0
                        d_min = d
                    j = head[a0]
                    while ts[j] != time:
                        ts[j] = time
                        dist[j] = d
                        d -= 1
                        j = head[parent[j]]
            if a0_min >= 0:
                parent[i2] = a0_min
                ts[i2] = time
                dist[i2] = d_min + 1
            else:
                parent[i2] = NONE
                for a0 in range(first[i2], first[i2 + 1]):
                    j = head[a0]
                    if is_sink[j] != sink_side or parent[j] == NONE:
                        continue
                    residual = r_cap[a0] if sink_side else r_cap[sister[a0]]
                    if residual > 0 and not is_active[j]:
                        is_active[j] = True
                        active[a_tail] = j
                        a_tail = (a_tail + 1) % size
                    a = parent[j]
                    if a != TERMINAL and a != ORPHAN and head[a] == i2:
                        parent[j] = ORPHAN
                        orphans[o_tail] = j
                        o_tail = (o_tail + 1) % size

    in_source = np.zeros(n, np.bool_)
    for i in range(n):
        in_source[i] = parent[i] != NONE and not is_sink[i]
    return flow, in_source
