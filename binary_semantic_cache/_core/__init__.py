"""What the cache stands on: its arrays, the input gate, stored responses, JIT options."""
