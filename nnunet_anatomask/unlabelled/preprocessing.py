"""nnU-Net's DefaultPreprocessor for cases without a segmentation.

DefaultPreprocessor.run reads ``labelsTr/<case>`` for every training case; here each case is preprocessed as
nnU-Net preprocesses a case without a segmentation (``run_case(..., seg_file=None)``, as for inference): the
stored segmentation is nnU-Net's nonzero-mask marker (0 inside, -1 outside), never a label. ``class_locations``
is empty: nnU-Net's loader reads the key on every case, and stage 1 never oversamples foreground.
"""
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor


class UnlabelledPreprocessor(DefaultPreprocessor):
    def run_case(self, image_files, seg_file, plans_manager, configuration_manager, dataset_json):
        data, seg, properties = super().run_case(image_files, None, plans_manager, configuration_manager,
                                                 dataset_json)
        properties["class_locations"] = {}
        return data, seg, properties
