"""Dynamic batching for a server: concurrent requests share one forward pass.

Each image waits at most ``max_wait_s`` for others to join its batch (up to ``max_batch``);
while a batch runs, the next one gathers, so under load batches fill without any waiting.
Inference runs in one dedicated thread, so the event loop keeps accepting requests.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch


class Batcher:
    def __init__(self, infer: Callable[[torch.Tensor], torch.Tensor], max_batch: int, max_wait_s: float):
        self.infer, self.max_batch, self.max_wait_s = infer, max_batch, max_wait_s
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="alexnet-infer")
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.batches = 0  # forward passes run
        self.images = 0  # images they held

    async def submit(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ``(N, classes)``, computed together with whatever else is waiting."""
        if self.task is None or self.task.done():  # started on first use, in the server's event loop
            self.queue, self.task = asyncio.Queue(), asyncio.create_task(self._run())
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(len(images))]
        for image, future in zip(images, futures):
            self.queue.put_nowait((image, future))
        return torch.stack(await asyncio.gather(*futures))

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def _gather(self) -> list:
        items = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(items) < self.max_batch:
            if not self.queue.empty():
                items.append(self.queue.get_nowait())
                continue
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self.queue.get(), left))
            except asyncio.TimeoutError:
                break
        return [(image, future) for image, future in items if not future.done()]  # a cancelled request's are done

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._gather()
            if not items:
                continue
            try:
                out = await loop.run_in_executor(self.pool, self.infer, torch.stack([image for image, _ in items]))
            except Exception as e:  # noqa: BLE001 - the requests of this batch fail; the server goes on
                for _, future in items:
                    if not future.done():
                        future.set_exception(e)
                continue
            self.batches, self.images = self.batches + 1, self.images + len(items)
            for (_, future), row in zip(items, out):
                if not future.done():
                    future.set_result(row)
