"""What happens to a take once it exists: the take and its sidecar record (`record`), the folder that
keeps takes (`store`, with its `journal`, `index` and `folder` machinery), reading and writing audio
(`audio_io`), exporting (`export`) and measuring it (`analysis`).

No torch models here: a take is audio plus the record of how it was made.
"""

from .analysis import Measurement, adherence, measure, measure_take
from .audio_io import AudioFileError, read_audio, wav_bytes
from .export import export_batch, export_lineage, export_takes
from .record import TAKE_ID_PATTERN, Take, check_take_id, new_take_id
from .store import TakeStore

__all__ = ["AudioFileError", "Measurement", "TAKE_ID_PATTERN", "Take", "TakeStore", "adherence", "check_take_id",
           "export_batch", "export_lineage", "export_takes", "measure", "measure_take", "new_take_id", "read_audio",
           "wav_bytes"]
