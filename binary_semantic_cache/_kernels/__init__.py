"""Every compiled kernel of the library, one module per concern.

``state`` describes the arrays they share; ``scan`` finds nearest codes, ``rescore``
computes exact cosines of stored copies, ``slots`` keeps the recency list, expiry
heap and free list. ``_core.index.Index`` is their one caller.
"""

from .state import (  # noqa: F401
    FREE,
    HEAD,
    HEAPN,
    HW,
    SIZE,
    STATE_LEN,
    TAIL,
    TICK,
    TICK_MAX,
)
from .scan import (  # noqa: F401
    NO_DISTANCE,
    _add1,
    _add2,
    _add4,
    _better,
    _block_distances,
    _block_top1,
    _hamming,
    _kth_distance,
    _min4,
    _scan_batch,
    _scan_batch_parallel,
    _scan_batch_range,
    _scan_range,
    _scan_top1,
    _scan_top1_parallel,
    _set4,
    _topk,
    _topk_insert,
    _topk_parallel,
    _topk_range,
)
from .rescore import (  # noqa: F401
    _cosine,
    _cosine_half,
    _pick_best,
    _rescore,
    _rescore_half,
)
from .slots import (  # noqa: F401
    BAD_FREE,
    BAD_HEAP,
    BAD_NORM,
    BAD_RECENCY,
    _check_slots,
    _heap_down,
    _heap_push,
    _heap_remove,
    _heap_swap,
    _heap_up,
    _insert,
    _purge_expired,
    _push_front,
    _release,
    _stamp,
    _touch,
    _unlink,
)
