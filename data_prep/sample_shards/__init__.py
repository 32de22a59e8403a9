"""Sample shards on disk: what ``ingest`` writes and ``pack`` reads.

A sample-shard dataset is a directory of ``samples-000000.tar``, ``samples-000001.tar``, ...
(webdataset layout: uncompressed tar, members grouped by key) plus ``ingest_manifest.json``
(``manifest``). One sample is one document (``sample_meta``):

    {key}.json        {"kind", "source", "images": [{"height", "width", "orig_height",
                       "orig_width", "sha256"}], "segments": [...]}
    {key}.img{k}.png  image k, RGB, already resized to images[k] (lossless)

``images[k].height/width`` is the resized size (multiples of 28 by default), ``orig_*`` the size
of the source image after EXIF rotation and ``sha256`` the digest of the source image file. Keys
are the 9-digit running number of the sample in the dataset. Shards (``writer``) are reproducible
byte for byte and appear atomically; ``reader`` reads them back.
"""
