"""CachedOpenAI hits at 100k stored answers: what the wrapper adds to the cache calls."""

from binary_semantic_cache.tools.bench_llm import prefilled


class LLMHits:
    timeout = 600

    def setup(self):
        self.client, self.exact, self.semantic, self.core = prefilled(n=100_000, dim=384)
        self.create = self.client.chat.completions.create
        # Past the first calls, which load kernels and start the scan's thread pool.
        for i in range(32):
            self.create(**self.exact[i])
            self.create(**self.semantic[i])
            self.core["cache.get alone"](i)

    def time_exact_hit(self):
        self.create(**self.exact[1])

    def time_semantic_hit(self):
        self.create(**self.semantic[1])

    def time_get_exact_alone(self):
        self.core["cache.get_exact alone"](1)

    def time_get_alone(self):
        self.core["cache.get alone"](1)
